"""The live-call service (``qa-pipeline serve``): many concurrent lines, one shared model.

* :mod:`.config` - the serve config file (sources, live ASR, metrics, shutdown).
* :mod:`.session` - one :class:`~.session.CallSession` per call: VAD per channel, ASR results
  back in order, the incremental rule evaluator, the call's events.
* :mod:`.decoder` / :mod:`.asr_worker` - the shared ASR: full 30 s window or a window fitted
  to the utterance with batches across lines; bounded queue with counted drops.
* :mod:`.service` - the asyncio service tying sources, sessions, ASR, rules and sinks.
* :mod:`.cli` - the ``serve`` command.
"""

from .config import ServeConfig, load_serve_config
from .service import LiveService

__all__ = ["LiveService", "ServeConfig", "load_serve_config"]
