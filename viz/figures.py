"""`python -m viz.figures IMAGE --model NAME --out FILE.pdf|png`: paper-style figures for slides (viz/slides.py).

Only the command line lives here, so that `python -m` runs a module the `viz` package has not imported already
(the figure functions are in print_figures.py; runpy warns when the module it runs is in sys.modules).
"""
from viz.slides import main

if __name__ == "__main__":
    main()
