"""DETR Lens web app, from a clone: `python app.py [--port 7860] [--model auto] ...` (installed: `detr-lens`).

The command line is webapp/cli.py, the page webapp/page.py.
"""
from webapp.cli import main

if __name__ == "__main__":
    main()
