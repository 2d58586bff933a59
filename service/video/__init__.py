"""Video input of the service: streamed uploads, the container allow-list and the PyAV decoder.

`upload` turns an HTTP body into a temporary file under a byte limit, `containers` decides which files
FFmpeg may open and opens them locked down, `decode` probes and decodes them into resized RGB frames.
Nothing here knows about HTTP frameworks or torch; failures are `service.errors` domain errors.
Import the submodules directly (`from service.video.decode import decode_video`): this package module
stays empty so that receiving an upload does not load FFmpeg.
"""
