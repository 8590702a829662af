"""The web app's pieces (app.py): limits, the temporary workspace, uploads, the photo and video jobs on
test.py's run loop and sinks, the browser copy of a video, and the Gradio page. Only page.py imports
Gradio; nothing here imports model/ (app.py builds the detector and hands it in)."""
