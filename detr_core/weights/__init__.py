"""Where a model's weights come from: checkpoint files (read safely), the official model zoo,
the bundled model, and the app's automatic choice."""
