"""The page's own CSS (given to `launch`, where Gradio 6 takes it): small layout fixes over Gradio's defaults, each
with the problem it solves. Selectors use the elem_ids the views give their components."""

PAGE_CSS = """
/* The input image at most 45% of the window high: a portrait image otherwise fills the left column and pushes the
   model menu and the threshold below the fold (1920x1080). Clicks still map to the analysed image's pixels: Gradio
   scales the click by the image's natural size. */
#input-image img { max-height: 45vh; object-fit: contain; }

/* Gallery captions under their thumbnails, not over them: Gradio draws the caption as a badge over the image's
   bottom right corner, where it hides the object the tile labels. */
#query-gallery .thumbnail-item { display: flex; flex-direction: column; aspect-ratio: auto; }
#query-gallery .thumbnail-item img { flex: 1 1 auto; min-height: 0; }
#query-gallery .caption-label { position: static; max-width: 100%; border: none; border-radius: 0;
                                text-align: center; }
"""
