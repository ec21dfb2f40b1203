"""Luxonis OAK-D cameras (``oak://[device-id]``) through depthai v3 (optional: ``pip install depthai``).

Colour from CAM_A; stereo depth from CAM_B/CAM_C aligned to CAM_A on the device
(``StereoDepth.setDepthAlign``) in millimetres; colour and depth grouped by a Sync node.
Written against the depthai v3 API; not exercised on hardware in CI (no device there).
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Iterator, Optional

import numpy as np

from .base import Frame, Source, SourceError


def import_dai():
    """Import depthai (v3) or raise SourceError saying how to install it."""
    try:
        import depthai as dai
    except ImportError as e:
        raise SourceError(f"OAK cameras need depthai v3: pip install 'depthai>=3' ({e})") from None
    if not hasattr(dai, "node") or not hasattr(dai.node, "Camera") or not hasattr(dai.Pipeline, "start"):
        raise SourceError(f"OAK support needs depthai v3; installed depthai "
                          f"{getattr(dai, '__version__', '?')} is older")
    return dai


def _device_id(info) -> str:
    for attr in ("getDeviceId", "getMxId"):
        if hasattr(info, attr):
            return str(getattr(info, attr)())
    return str(getattr(info, "deviceId", getattr(info, "mxid", "?")))


def list_devices() -> list:
    """Connected OAK devices: [{'name', 'serial'}] (empty when depthai is not installed)."""
    try:
        dai = import_dai()
    except SourceError:
        return []
    return [{"name": f"OAK {getattr(i, 'name', '')}".strip(), "serial": _device_id(i)}
            for i in dai.Device.getAllAvailableDevices()]


class OakSource(Source):
    """Live OAK-D colour + aligned depth. ``live = True``."""

    live = True

    def __init__(self, device_id: Optional[str] = None, width: int = 640, height: int = 480,
                 fps: float = 30.0, timeout_s: float = 5.0):
        dai = self._dai = import_dai()
        devices = list_devices()
        if not devices:
            raise SourceError("no OAK camera is connected")
        if device_id and device_id not in {d["serial"] for d in devices}:
            raise SourceError(f"OAK {device_id!r} not found; connected: "
                              + ", ".join(d["serial"] for d in devices))
        self.device_id = device_id or devices[0]["serial"]
        self.uri = f"oak://{self.device_id}"
        self.timeout_s = timeout_s
        try:
            self.device = dai.Device(dai.DeviceInfo(self.device_id))
            p = self.pipeline = dai.Pipeline(self.device)
            cam = p.create(dai.node.Camera).build(dai.CameraBoardSocket.CAM_A)
            left = p.create(dai.node.Camera).build(dai.CameraBoardSocket.CAM_B)
            right = p.create(dai.node.Camera).build(dai.CameraBoardSocket.CAM_C)
            stereo = p.create(dai.node.StereoDepth)
            sync = p.create(dai.node.Sync)
            sync.setSyncThreshold(timedelta(seconds=0.5 / fps))
            left.requestOutput((640, 400), fps=fps).link(stereo.left)
            right.requestOutput((640, 400), fps=fps).link(stereo.right)
            stereo.setDepthAlign(dai.CameraBoardSocket.CAM_A)
            stereo.setOutputSize(width, height)
            cam.requestOutput((width, height), dai.ImgFrame.Type.BGR888i, fps=fps).link(sync.inputs["rgb"])
            stereo.depth.link(sync.inputs["depth"])
            self.queue = sync.out.createOutputQueue(maxSize=4, blocking=False)
            p.start()
        except Exception as e:  # depthai raises RuntimeError subclasses with the device's reason
            raise SourceError(f"cannot start OAK {self.device_id}: {e}") from None
        self.stats = {}

    def __iter__(self) -> Iterator[Frame]:
        n = 0
        while True:
            t0 = time.monotonic()     # not the wall clock: an NTP / RTC step at boot must not hide or fake an outage
            group = None
            while group is None:
                if not self.pipeline.isRunning():
                    raise SourceError(f"OAK {self.device_id} pipeline stopped")
                group = self.queue.tryGet()
                if group is None:
                    if time.monotonic() - t0 > self.timeout_s:
                        raise SourceError(f"OAK {self.device_id}: no frames for {self.timeout_s:g} s")
                    time.sleep(0.002)
            rgb = np.ascontiguousarray(group["rgb"].getCvFrame()[:, :, ::-1])  # BGR -> RGB
            depth = np.asarray(group["depth"].getFrame()).astype(np.uint16)   # millimetres
            yield Frame(str(group["rgb"].getSequenceNum()), rgb, depth, time.time())
            n += 1

    def close(self) -> None:
        try:
            self.pipeline.stop()
        except Exception:
            pass
        try:
            self.device.close()
        except Exception:
            pass
