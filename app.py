"""DETR Lens web app (placeholder until the app issue lands)."""
if __name__ == "__main__":
    raise SystemExit("the app is not built yet")
