"""Video input: the container allow-list and lock-down (`containers`), probing and decoding (`decode`).

Import the submodules directly (`from fstcn.core.video.decode import decode_video`): this package module
stays empty so that importing the core does not load FFmpeg.
"""
