"""The listening page: live sessions (`jplaylist.session.live`) over HTTP.

  app.py    `make_app(library, embed_text, audio_source)`: the ASGI app (Starlette)
            with the session JSON API, the track audio and the page
  audio.py  the library's own recordings as WAV bytes, from a built dataset or
            a folder (the two sources of a `library_index`)
  static/   the page (plain HTML, JS and CSS, shipped as package data)

`launch/serve.py` runs it with uvicorn.
"""
