"""`vae explore`: a trained model's latent space in a local web page.

  explorer.py  what the page asks of a model (decode a code, encode an upload, blend, random
               codes), as plain methods over a loaded run, callable without a server
  server.py    the HTTP API and the page (Starlette, served by uvicorn)
  static/      the page itself: plain HTML, JavaScript and CSS, no build step, nothing fetched
               from the internet
"""
