"""Writes services/api/static/celebrate.wav, the TV board's celebration chime (docs/screens.md, "Sound"): three
rising bell-like notes (C6, E6, G6) with a soft attack and an exponential decay, 1.1 s, 22,050 Hz, 16-bit mono.
Made here rather than downloaded, so the project ships a sound it has the rights to.

    .venv/bin/python deploy/celebrate_sound.py
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

RATE = 22_050
LENGTH = 1.1
NOTES = ((1046.50, 0.00), (1318.51, 0.12), (1567.98, 0.24))  # Hz, start (s)
OUT = Path(__file__).resolve().parent.parent / "services" / "api" / "static" / "celebrate.wav"


def sample(t: float) -> float:
    value = 0.0
    for frequency, start in NOTES:
        s = t - start
        if s < 0:
            continue
        envelope = min(1.0, s / 0.006) * math.exp(-s * 4.2)
        # a bell: the fundamental and two soft overtones
        value += envelope * (math.sin(2 * math.pi * frequency * s) + 0.35 * math.sin(2 * math.pi * 2.01 * frequency * s)
                             + 0.12 * math.sin(2 * math.pi * 3.02 * frequency * s))
    return value / 2.2


def main() -> None:
    frames = bytearray()
    for n in range(int(RATE * LENGTH)):
        frames += struct.pack("<h", int(max(-1.0, min(1.0, sample(n / RATE))) * 32767 * 0.8))
    with wave.open(str(OUT), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
