"""A report per scoring run: one self-contained HTML page per input (collect.py gathers while scoring,
html.py writes the page; page.html, page.css and page.js are its markup, style and script)."""
