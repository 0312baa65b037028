"""The live gatherer: WebSocket connections and REST tasks feeding the pure pipeline
(:mod:`kalshi.pipeline`) and the store's writers (:mod:`kalshi.store`).

:class:`Gatherer` (``service``) runs it; ``connection``, ``layout``, ``registry``,
``rest_tasks``, ``context`` and ``metrics`` are its parts.
"""

from kalshi.gather.service import Gatherer

__all__ = ["Gatherer"]
