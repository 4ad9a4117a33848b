"""The web app's parts: per-user session, model cache, and one module per tab (each with `build(ctx)`)."""
