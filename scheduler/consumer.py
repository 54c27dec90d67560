"""Consuming `corral.ingress` and `corral.status` for the leader.

kombu channels are not thread-safe, so this thread both receives and acknowledges:
the state machine hands back the messages it has made durable through `ack()`.
Messages are decoded here, JSON only; one that cannot be decoded is still passed on,
with the error, so that it is rejected with a recorded reason.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Any

from kombu import Connection, Queue
from kombu.message import Message

from corral.keys import INGRESS_QUEUE, STATUS_QUEUE

log = logging.getLogger("corral.consumer")


class Consumer(threading.Thread):
    def __init__(self, broker: str, inbox: queue.Queue[Any], prefetch: int = 512) -> None:
        super().__init__(daemon=True, name="corral-consumer")
        self.broker = broker
        self.inbox = inbox
        self.prefetch = prefetch
        self._acks: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._stop = threading.Event()

    def ack(self, message: Message) -> None:
        self._acks.put(message)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:
                log.warning("broker connection lost (%s); reconnecting", exc)
                self._stop.wait(0.5)

    def _consume(self) -> None:
        with Connection(self.broker, transport_options={"visibility_timeout": 12 * 3600}) as conn:
            channel = conn.channel()
            consumers = [
                conn.Consumer(
                    [Queue(name, routing_key=name)],
                    channel=channel,
                    on_message=self._handler(kind),
                    accept=["json"],
                    no_ack=False,
                    prefetch_count=self.prefetch,
                )
                for kind, name in (("ingress", INGRESS_QUEUE), ("status", STATUS_QUEUE))
            ]
            for c in consumers:
                c.consume()
            try:
                while not self._stop.is_set():
                    self._flush_acks()
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=0.01)
                self._flush_acks()
            finally:
                for c in consumers:
                    c.cancel()
                channel.close()  # unacked messages go back to their queue

    def _flush_acks(self) -> None:
        while True:
            try:
                message = self._acks.get_nowait()
            except queue.Empty:
                return
            try:
                message.ack()
            except Exception:
                log.exception("ack failed")

    def _handler(self, kind: str) -> Any:
        def on_message(message: Message) -> None:
            try:
                body, error = message.decode(), None
            except Exception as exc:
                body, error = None, f"{type(exc).__name__}: {exc}"
                error = f"undecodable message ({message.content_type}): {error}"
            self.inbox.put((kind, dict(message.headers or {}), body, error, message))

        return on_message
