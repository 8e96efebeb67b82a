"""ffmpeg's options, written once for both of vtremote's ffmpeg-style front ends.

* :mod:`.option` - what an option is, and one use of it on a line;
* :mod:`.table` - every option: spellings, place on the line, help, setters;
* :mod:`.setters` / :mod:`.remote` - what an option sets in the typed job
  (:class:`~vtremote.pipeline.spec.JobSpec`);
* :mod:`.levels` - ``-loglevel`` names and numbers.

``vtremote`` (:mod:`vtremote.cli.options`) reads its command line with the table as it is;
``vtremote-ffmpeg`` (:mod:`vtremote.mediaserver.dialect`) adds what only media servers send.
"""

from __future__ import annotations

from vtremote.pipeline.ffmpeg_options.option import Occurrence, Option
from vtremote.pipeline.ffmpeg_options.table import BY_KEY, BY_SPELLING, OPTIONS, find

__all__ = ["BY_KEY", "BY_SPELLING", "OPTIONS", "Occurrence", "Option", "find"]
