"""Drop-in ``ffmpeg`` for media servers (Jellyfin, Emby): their command lines run on vtremote.

* :mod:`.config` - the TOML file and environment that say which server(s), which
  encoder names become remote, quality mapping, fallbacks;
* :mod:`.argv` - ffmpeg's command line as data (options with stream specifiers);
* :mod:`.dialect` - what media servers write beyond the shared option table
  (:mod:`vtremote.pipeline.ffmpeg_options`): taken, ignored, or left to ffmpeg;
* :mod:`.line` - a command line read once into input and output specs;
* :mod:`.media` - the main input's header (size, rate, start) for the translation;
* :mod:`.filters` - hardware filter chains and ``scale=`` expressions turned
  into plain software/server filters with numbers;
* :mod:`.translate` - the command line -> a :class:`~vtremote.pipeline.JobSpec`;
* :mod:`.info` - ``-version``, ``-encoders``, ``-decoders``, ``-filters``, ``-hwaccels``
  and ``-h`` answered in ffmpeg's format;
* :mod:`.counters` - how many runs went remote, fell back, or went to a real ffmpeg.

The entry point is ``vtremote-ffmpeg`` (:mod:`vtremote.cli.ffmpeg`).
"""

from __future__ import annotations
