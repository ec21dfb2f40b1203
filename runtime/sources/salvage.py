"""Salvaging recordings whose writer was killed: read every intact message, say where they end.

Robots leave behind recordings cut short (power loss, SIGKILL, a full disk):

* ROS 2 ``.mcap`` without its summary and footer (written only on close), possibly cut inside a
  record. ``McapSalvage`` walks the records from the start (the format is a flat sequence of
  ``opcode u8 | length u64 | body`` records; chunks hold the same records, compressed) and stops
  at the first record that is cut off or whose chunk fails its CRC.
* SQLite ``.db3`` files (ROS 2 bags and RealSense SDK >= 2.58 recordings) cut short: the header
  says how many pages the database had; ``SqliteSalvage`` reads the rows SQLite can still reach,
  in insertion order, and stops at the first unreadable page.
* A bag directory without ``metadata.yaml`` (rosbag2 writes it on close): its storage files are
  read as above.

Each salvage records ``end``: where the intact data ends (file bytes, messages, last timestamp,
reason), which the sources turn into a ``recording_truncated`` event of the run's results. An MCAP's
``intact_bytes``: the file's first bytes that hold every message read (up to the last whole record;
in an uncompressed chunk cut short, up to its last whole message; a compressed chunk cut short is
decoded up to the cut, so there the whole file).
"""
from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import zlib
from pathlib import Path
from typing import Iterator, Optional

MCAP_MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06


# ----------------------------------------------------------------------------- detection

def mcap_is_complete(path: os.PathLike) -> bool:
    """True when the file ends with MCAP's footer magic (the writer closed it)."""
    path = Path(path)
    size = path.stat().st_size
    if size < 2 * len(MCAP_MAGIC) + 9:
        return False
    with open(path, "rb") as f:
        f.seek(size - len(MCAP_MAGIC))
        return f.read() == MCAP_MAGIC


def sqlite_expected_bytes(path: os.PathLike) -> Optional[int]:
    """The size the SQLite header says the database has (page count x page size), or None when the
    header does not tell (not SQLite, or an old writer that left the count stale)."""
    with open(path, "rb") as f:
        hdr = f.read(100)
    if len(hdr) < 100 or not hdr.startswith(b"SQLite format 3\x00"):
        return None
    page = struct.unpack(">H", hdr[16:18])[0]
    page = 65536 if page == 1 else page
    change, pages, valid_for = struct.unpack(">I", hdr[24:28])[0], struct.unpack(">I", hdr[28:32])[0], \
        struct.unpack(">I", hdr[92:96])[0]
    if pages == 0 or change != valid_for:
        return None
    return pages * page


def sqlite_is_truncated(path: os.PathLike) -> bool:
    """True when the file is shorter than its SQLite header says (a copy or write cut short)."""
    expected = sqlite_expected_bytes(path)
    return expected is not None and Path(path).stat().st_size < expected


def needs_salvage(path: os.PathLike) -> bool:
    """True for a recording rosbags cannot read whole: a ROS 2 bag directory without metadata.yaml,
    an .mcap without its footer, a .db3 shorter than its header says."""
    path = Path(path)
    if path.is_dir():
        files = storage_files(path)
        return bool(files) and (not (path / "metadata.yaml").exists() or any(needs_salvage(f) for f in files))
    if path.suffix == ".mcap":   # an MCAP start without its end (garbage is left to rosbags' error)
        with open(path, "rb") as f:
            return f.read(len(MCAP_MAGIC)) == MCAP_MAGIC and not mcap_is_complete(path)
    if path.suffix == ".db3":
        return sqlite_is_truncated(path)
    return False


def storage_files(bag_dir: os.PathLike) -> list:
    """The storage files of a ROS 2 bag directory (``*.mcap``, ``*.db3``) in name order."""
    d = Path(bag_dir)
    return sorted(p for p in d.iterdir() if p.suffix in (".mcap", ".db3") and p.is_file())


# ----------------------------------------------------------------------------- MCAP

def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "lz4":
        import lz4.frame
        return lz4.frame.decompress(data)
    if compression == "zstd":
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            try:
                from backports import zstd
            except ImportError:
                zstd = None
        if zstd is not None:
            return zstd.decompress(data)
        import zstandard
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    raise ValueError(f"unknown MCAP chunk compression {compression!r}")


class _Body:
    """Reads MCAP primitives (little-endian) from one record's body."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("record body too short")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u32()).decode("utf-8")


def _records(buf, start: int = 0) -> Iterator[tuple]:
    """(offset, opcode, body, whole) for each record of ``buf`` from ``start``; the last one may be
    cut (``whole`` False, ``body`` what is there). Stops where not even a record header is left."""
    pos = start
    while pos + 9 <= len(buf):
        op, length = buf[pos], struct.unpack("<Q", buf[pos + 1:pos + 9])[0]
        whole = pos + 9 + length <= len(buf)
        yield pos, op, buf[pos + 9:min(pos + 9 + length, len(buf))], whole
        if not whole:
            return
        pos += 9 + length


def _decompress_prefix(data: bytes, compression: str) -> bytes:
    """As much of a cut compressed stream as decodes (streaming decompressors); b"" when none."""
    try:
        if compression == "":
            return data
        if compression == "lz4":
            import lz4.frame
            return lz4.frame.LZ4FrameDecompressor().decompress(data)
        if compression == "zstd":
            try:
                from backports import zstd
                return zstd.ZstdDecompressor().decompress(data)
            except ImportError:
                import zstandard
                return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except Exception:
        pass
    return b""


class McapSalvage:
    """Every intact message of a ROS 2 .mcap, in file order, whatever happened to its end."""

    def __init__(self, path: os.PathLike):
        self.path = Path(path)
        self.schemas: dict = {}    # schema id -> message type name
        self.channels: dict = {}   # channel id -> (topic, message type)
        self.end: dict = {}

    def topics(self) -> dict:
        """{topic: msgtype} of the intact part (reads it through once)."""
        for _ in self.messages():
            pass
        return {t: m for t, m in self.channels.values()}

    def messages(self) -> Iterator[tuple]:
        """(topic, msgtype, log_time_ns, raw CDR bytes) of each intact message; sets ``end``."""
        with open(self.path, "rb") as f:
            if self.path.stat().st_size == 0:
                raise ValueError(f"{self.path} is empty")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # pages in on demand, not all at once
        try:
            yield from self._scan(buf)
        finally:
            buf.close()

    def _scan(self, buf) -> Iterator[tuple]:
        if buf[:len(MCAP_MAGIC)] != MCAP_MAGIC:
            raise ValueError(f"{self.path} is not an MCAP file (bad magic)")
        n, last_t, intact = 0, None, len(MCAP_MAGIC)
        reason = "footer missing (the writer did not close the file)"
        footer = False
        for off, op, body, whole in _records(buf, len(MCAP_MAGIC)):
            if op == OP_FOOTER and whole:
                footer, intact, reason = True, len(buf), None
                break
            try:
                if op == OP_CHUNK:
                    b = _Body(body)
                    b.u64(), b.u64()
                    size, crc = b.u64(), b.u32()
                    comp = b.string()
                    clen = b.u64()
                    if whole:
                        data = _decompress(b.take(clen), comp, size)
                        if len(data) != size or (crc and zlib.crc32(data) & 0xFFFFFFFF != crc):
                            reason = f"chunk at byte {off} fails its size/CRC check"
                            break
                    else:  # the writer died inside this chunk: its records that decode whole
                        data = _decompress_prefix(body[b.pos:], comp)
                    inner = [(o, p, x) for o, p, x, w in _records(data) if w]
                    cut_data_at = off + 9 + b.pos   # file offset of the chunk's (cut) records
                elif whole:
                    inner = [(off, op, body)]
                else:
                    inner = []
            except Exception as e:  # a damaged chunk: stop before it
                reason = f"unreadable record at byte {off}: {e}"
                break
            for _, iop, ibody in inner:
                got = self._record(iop, ibody)
                if got is not None:
                    n += 1
                    last_t = got[2]
                    yield got
            if not whole:
                what = {OP_CHUNK: "a chunk of messages", OP_MESSAGE: "a message"}.get(op, f"a record of type 0x{op:02x}")
                reason = (f"cut inside a record at byte {off} of {len(buf)} ({what}: the writer stopped while "
                          "writing it; footer missing)")
                if op == OP_CHUNK and inner:   # messages read from the cut chunk: the bytes they came from
                    # uncompressed: up to the end of its last whole record; compressed: its stream was
                    # decoded up to the cut (which compressed byte ends the last record is not known)
                    intact = (cut_data_at + max(o + 9 + len(x) for o, _, x in inner) if comp == ""
                              else len(buf))
                break
            intact = off + 9 + len(body)
        self.end = {"file": str(self.path), "file_bytes": len(buf), "intact_bytes": intact,
                    "messages": n, "last_message_ns": last_t, "reason": reason}

    def _record(self, op: int, body: bytes):
        b = _Body(body)
        if op == OP_SCHEMA:
            sid = b.u16()
            self.schemas[sid] = b.string()
        elif op == OP_CHANNEL:
            cid, sid = b.u16(), b.u16()
            self.channels[cid] = (b.string(), self.schemas.get(sid, ""))
        elif op == OP_MESSAGE:
            cid, _seq, log_t, _pub = b.u16(), b.u32(), b.u64(), b.u64()
            if cid in self.channels:
                topic, msgtype = self.channels[cid]
                return topic, msgtype, log_t, body[b.pos:]
        return None


# ----------------------------------------------------------------------------- SQLite

def _connect_ro(path: Path) -> sqlite3.Connection:
    # immutable: no journal/WAL files created next to the recording, no locking
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    # SQLite refuses a file shorter than its header's page count unless the schema is "writable"
    # (a read-only connection still writes nothing): then it reads the pages that are there
    con.execute("PRAGMA writable_schema=ON")
    return con


def _rows(con: sqlite3.Connection, sql: str) -> tuple[list, Optional[str]]:
    """The rows SQLite can reach, in order, and the error that stopped it (None: all read)."""
    out = []
    try:
        cur = con.execute(sql)
        while True:
            row = cur.fetchone()
            if row is None:
                return out, None
            out.append(row)
    except sqlite3.DatabaseError as e:
        return out, str(e)


class SqliteSalvage:
    """The readable rows of a rosbag2-layout SQLite file (``topics``, ``messages``) cut short."""

    def __init__(self, path: os.PathLike):
        self.path = Path(path)
        self.end: dict = {}
        self._topics: Optional[dict] = None

    def _topic_rows(self, con) -> dict:
        rows, _ = _rows(con, "SELECT id, name, type FROM topics ORDER BY id")
        return {r[0]: (r[1], r[2]) for r in rows}

    def topics(self) -> dict:
        con = _connect_ro(self.path)
        try:
            self._topics = self._topic_rows(con)
        finally:
            con.close()
        return {t: m for t, m in self._topics.values()}

    def messages(self) -> Iterator[tuple]:
        """(topic, msgtype, timestamp_ns, raw CDR bytes) of each readable message in insertion order."""
        con = _connect_ro(self.path)
        n, last_t, err = 0, None, None
        try:
            topics = self._topic_rows(con)
            try:
                cur = con.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
                while True:
                    row = cur.fetchone()
                    if row is None:
                        break
                    tid, t, data = row
                    if tid is None or t is None or data is None:  # a row of a damaged page
                        err = f"message {n + 1} is damaged"
                        break
                    n += 1
                    last_t = t
                    if tid in topics:
                        yield topics[tid][0], topics[tid][1], t, bytes(data)
            except sqlite3.DatabaseError as e:
                err = str(e)
        finally:
            con.close()
        size = self.path.stat().st_size
        reason = (f"SQLite stopped at an unreadable page or row ({err})" if err else
                  "file shorter than its header says; every reachable message read"
                  if sqlite_is_truncated(self.path) else None)
        self.end = {"file": str(self.path), "file_bytes": size, "expected_bytes": sqlite_expected_bytes(self.path),
                    "messages": n, "last_message_ns": last_t, "reason": reason}


def copy_readable(src: os.PathLike, dst: os.PathLike) -> dict:
    """Copy every readable row of each table of SQLite ``src`` into a new database ``dst`` (same
    schema), so a reader that needs an intact file (librealsense) can open it. Returns the ``end``
    facts: rows copied per table, the first error, file sizes."""
    src, dst = Path(src), Path(dst)
    con = _connect_ro(src)
    out = sqlite3.connect(str(dst))
    copied, errors = {}, {}
    try:
        schema, err = _rows(con, "SELECT type, name, tbl_name, sql FROM sqlite_master")
        if err:
            errors["sqlite_master"] = err
        tables = [(name, sql) for typ, name, _, sql in schema if typ == "table" and sql
                  and not name.startswith("sqlite_")]
        for name, sql in tables:
            out.execute(sql)
            rows, err = _rows(con, f'SELECT * FROM "{name}" ORDER BY rowid')
            n = 0
            for row in rows:  # row by row: a row read from a damaged page may break the schema
                try:
                    out.execute(f'INSERT INTO "{name}" VALUES ({",".join("?" * len(row))})', row)
                except sqlite3.IntegrityError as e:
                    err = f"row {n + 1} is damaged ({e})"
                    break
                n += 1
            copied[name] = n
            if err:
                errors[name] = err
        for typ, name, _, sql in schema:
            if typ == "index" and sql:
                out.execute(sql)
        out.commit()
    finally:
        out.close()
        con.close()
    return {"file": str(src), "file_bytes": src.stat().st_size, "expected_bytes": sqlite_expected_bytes(src),
            "rows": copied, "messages": copied.get("messages"),
            "reason": ("; ".join(f"{t}: {e}" for t, e in errors.items()) or
                       "file shorter than its header says; every reachable row read")}


def salvage_reader(path: os.PathLike):
    """McapSalvage / SqliteSalvage for one storage file."""
    path = Path(path)
    if path.suffix == ".mcap":
        return McapSalvage(path)
    if path.suffix == ".db3":
        return SqliteSalvage(path)
    raise ValueError(f"cannot salvage {path}: not an .mcap or .db3 file")
