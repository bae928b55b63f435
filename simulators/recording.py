"""Recordings: a compact file of MQTT messages (topic, payload, original publish time).

Format "SCREC1" (documented in docs/simulators.md): a gzip stream (mtime 0, so the same
messages give the same bytes) holding

    b"SCREC1\\n"
    one line of JSON metadata (what made the recording), ending in b"\\n"
    then one frame per message, little-endian:
        int64   publish time, microseconds since the Unix epoch (UTC)
        uint16  topic length in bytes      uint32  payload length in bytes
        topic (UTF-8)                      payload (raw bytes, any content)

A simulator's recording carries the simulated publish time; `smartcity record` carries the
time the message arrived from the broker.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import orjson

MAGIC = b"SCREC1\n"
_FRAME = struct.Struct("<qHI")
MAX_TOPIC_BYTES = 65535
# Frames are gathered and compressed in chunks of this size: zlib per small frame costs more
# than generating the message.
WRITE_CHUNK_BYTES = 1 << 20


class RecordingError(ValueError):
    """A file that is not a recording, or one that ends in the middle of a message."""


class RecordingWriter:
    def __init__(self, path: Path, metadata: dict[str, object]) -> None:
        self.path = path
        self._raw = path.open("wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
        self._buf = bytearray(MAGIC + orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS) + b"\n")
        self.count = 0

    def write(self, publish_time_s: float, topic: str, payload: bytes) -> None:
        topic_b = topic.encode()
        if len(topic_b) > MAX_TOPIC_BYTES:
            raise RecordingError(f"topic of {len(topic_b)} bytes is too long to record")
        buf = self._buf
        buf += _FRAME.pack(round(publish_time_s * 1e6), len(topic_b), len(payload))
        buf += topic_b
        buf += payload
        self.count += 1
        if len(buf) >= WRITE_CHUNK_BYTES:
            self._gz.write(buf)
            buf.clear()

    def close(self) -> None:
        if self._buf:
            self._gz.write(self._buf)
            self._buf.clear()
        self._gz.close()
        self._raw.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class RecordingReader:
    """Iterate a recording's messages as (publish time in epoch seconds, topic, payload)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw: BinaryIO = path.open("rb")
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="rb")
        try:
            magic = self._gz.read(len(MAGIC))
            meta_line = self._gz.readline()
        except (OSError, EOFError) as exc:
            self.close()
            raise RecordingError(f"{path} is not a recording (not gzip: {exc})") from None
        if magic != MAGIC:
            self.close()
            raise RecordingError(f"{path} is not a recording (no SCREC1 header)")
        try:
            self.metadata = orjson.loads(meta_line)
        except orjson.JSONDecodeError:
            self.close()
            raise RecordingError(f"{path}: the metadata line is not JSON") from None

    @property
    def compressed_offset(self) -> int:
        """Bytes of the file read so far (for progress against the file size)."""
        return self._raw.tell()

    def __iter__(self) -> Iterator[tuple[float, str, bytes]]:
        index = 0
        while True:
            head = self._gz.read(_FRAME.size)
            if not head:
                return
            if len(head) < _FRAME.size:
                raise RecordingError(f"{self.path}: truncated after message {index}")
            t_us, topic_len, payload_len = _FRAME.unpack(head)
            body = self._gz.read(topic_len + payload_len)
            if len(body) < topic_len + payload_len:
                raise RecordingError(f"{self.path}: truncated in message {index}")
            yield t_us / 1e6, body[:topic_len].decode(), body[topic_len:]
            index += 1

    def close(self) -> None:
        self._gz.close()
        self._raw.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def retarget(topic: str, prefix: str | None) -> str:
    """Replace a topic's first two levels (`{root}/{city}`) by `prefix` (e.g. `test/aktobe`)."""
    if not prefix:
        return topic
    parts = topic.split("/", 2)
    if len(parts) < 3:
        return topic
    return f"{prefix.strip('/')}/{parts[2]}"
