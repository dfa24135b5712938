#!/usr/bin/env python
"""Real recordings for the audio tagger, from Debian packages (issue 19, part 1).

    python scripts/fetch_real_audio.py [--cache DIR] [--jobs N]

For every package in PACKAGES: ``apt-get download`` the .deb into ``CACHE/debs`` (nothing is installed),
``dpkg -x`` it into ``CACHE/x/<package>``, find audio files (also inside zip containers: .pk3, .wz), label each
file by the package's explicit path rules (first match wins; unmatched files are skipped), decode (soundfile:
WAV/Ogg Vorbis/FLAC/MP3; sox for raw GSM), downmix, resample to 16 kHz (scipy's polyphase resampler), cut
long files into clips of at most CLIP_SECONDS (at most MAX_CLIPS_PER_FILE per file, evenly spaced), and write

- ``CACHE/clips/<package>.npz``: int16 samples of all the package's clips, concatenated, with their offsets;
- ``CACHE/manifest.csv``: one row per clip: package, version, path inside the package, start/duration in the
  source file, label, split, license (from usr/share/doc/<package>/copyright);
- ``CACHE/dropped.csv``: the rows left out, with the reason (``clean``): a clip identical to one kept in an
  earlier split (train, validation, test) or earlier in its own split, and every background clip of a file in
  which edgelstm's VAD (silero-vad's model, the ``vad`` extra) finds a voice (>= VOICE_SECONDS in one clip);
- ``CACHE/hours.json``: hours per class per split.

The split is per package, and no validation or test clip is a copy of a training clip, so validation and test
sources were never heard in training.  The cache defaults to
~/.cache/edgelstm/real_audio (``--cache`` or EDGELSTM_REAL_AUDIO overrides it); nothing lands in the repo.
Idempotent: a package whose .npz exists is not decoded again (``--force`` redoes it).
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SR = 16000
CLIP_SECONDS = 10.0
MAX_CLIPS_PER_FILE = 4
MIN_CLIP_SECONDS = 0.15
LABELS = ("speech", "alarm", "knock", "glass", "music", "background")
SPLIT_ORDER = ("train", "validation", "test")      # a clip in several splits is kept in the first (clean())
AUDIO_EXT = re.compile(r"\.(wav|ogg|oga|flac|mp3|gsm)$", re.I)
CONTAINER_EXT = re.compile(r"\.(pk3|wz|zip)$", re.I)

# Issue 19: never train on these (the README's real-recording check) ...
NEVER_TRAIN = ("alsa-utils", "sound-theme-freedesktop")
# ... and never use these at all (an independent check holds them).
NEVER_USE = ("asterisk-core-sounds-en-*", "asterisk-moh-opsound-*", "linphone*", "fillets-ng-data*",
             "ktuberling-data", "lomiri-sounds", "openttd-opensfx", "sonic-pi-samples", "minetest-data",
             "frozen-bubble-data", "fb-music-*")   # fb-music-*: frozen-bubble's own music, kept out with it


@dataclass
class Package:
    name: str
    split: str                      # train / validation / test
    rules: list                     # [(regex on the path inside the package, label or None to skip)]
    max_clips_per_file: int = MAX_CLIPS_PER_FILE
    note: str = ""
    license: str = ""               # where the copyright file names source paths, not the installed ones


ASTERISK = [(r"/silence/", None), (r"/(beep|beeperr|ascending-2tone|descending-2tone)\.", "alarm"),
            (r"\.(wav|gsm)$", "speech")]

PACKAGES = [
    # ------------------------------------------------------------------ train
    Package("asterisk-core-sounds-fr-wav", "train", ASTERISK, note="Canadian French voice prompts (8 kHz)"),
    Package("asterisk-core-sounds-es-wav", "train", ASTERISK, note="Mexican Spanish voice prompts (8 kHz)"),
    Package("asterisk-core-sounds-ru-wav", "train", ASTERISK, note="Russian voice prompts (8 kHz)"),
    Package("asterisk-prompt-it-menardi-wav", "train", ASTERISK, note="Italian voice prompts (8 kHz)"),
    Package("klettres-data", "train", [(r"\.(ogg|wav)$", "speech")],
            note="letters and syllables spoken in many languages"),
    Package("hedgewars-data", "train", [
        (r"/voices/", "speech"), (r"/Music/", "music"),
        (r"/Sounds/(beep|countdown\d|minetick)\.", "alarm"),
        (r"/Sounds/(\w*impact|bump|hammer|pickhammer|baseballbat|graveimpact)\.", "knock")],
        note="voice packs in English, Spanish, Polish, Russian, Ukrainian; soundtrack"),
    Package("warzone2100-data", "train", [
        (r"audio/sfx/interfce/beep", "alarm"),
        (r"audio/(memressp|tutorial|trnsppil|vtoltalk|countdown|multi|nexus|proxmessages|taunts)/", "speech"),
        (r"sequenceaudio/", "speech")], note="radio voice messages"),
    Package("wesnoth-1.16-music", "train", [(r"\.ogg$", "music")]),
    Package("wesnoth-1.16-data", "train", [
        (r"/sounds/ambient/", "background"), (r"/horn-signals/|/sounds/(bell|timer)\.", "alarm"),
        (r"/sounds/(mace|fist|club|flail|staff|cave-in)(-\d)?\.", "knock")]),
    Package("supertuxkart-data", "train", [
        (r"/music/", "music"),
        (r"/sfx/(horn)\.", "alarm"),
        (r"/sfx/(crash\d?|anvil|metal_clang|hammer|strike|ball_bounce|swatter|wooden_bridge|plunger)\.", "knock"),
        (r"/sfx/(river_loop|waterfall_loop_2|rain|engine_large|engine_small|machine_sound|exotic-birds|"
         r"exotic-birds_2|airplane_jetEngine|thunder)\.", "background")]),
    Package("widelands-data", "train", [
        (r"/data/music/", "music"),
        (r"/sound/(hammering|woodcutting|metal|smiths|stonecutting)/", "knock"),
        (r"/sound/animals/|/critters/", "background")]),
    Package("colobot-common-sounds", "train", [(r"/music/", "music")]),
    Package("redeclipse-data", "train", [
        (r"/sounds/music/", "music"),
        (r"/ambience/(door|switch|jumppad\d?|teleport|wakawaka|pneumatic)\.", None),
        (r"/ambience/", "background"),
        (r"/sounds/(announcer|voice)/", "speech"),
        (r"/sfx/alarm\.|/weapons/(grenade|mine)/beep\.", "alarm")]),
    Package("nexuiz-music", "train", [(r"cdtracks/", "music")]),
    Package("extremetuxracer-data", "train", [(r"/music/", "music"), (r"/sounds/tree_hit\.", "knock")]),
    Package("oxygen-sounds", "train", [
        (r"Oxygen-(Im-Phone-Ring|Sys-Warning|Sys-App-Error-Critical|Sys-App-Error-Serious(-Very)?|"
         r"Im-Nudge|Im-Internal-Error)\.", "alarm")]),
    Package("yaru-theme-sound", "train", [(r"/(bell|dialog-warning|battery-low|dialog-error)\.", "alarm")]),
    Package("tuxmath-data", "train", [(r"/(alarm|buzz|towerclock)\.", "alarm"), (r"/\d\d_\w+\.", "music")]),
    Package("ufoai-sound", "train", [
        (r"sound/ambience/", "background"),
        (r"sound/misc/breakglass", "glass"),
        (r"sound/doors/|sound/impact/(bullet|knife|nail)-impact|sound/misc/break(wood|metal)", "knock"),
        (r"sound/geoscape/basealert|sound/ui/beep", "alarm")]),
    Package("0ad-data", "train", [
        (r"audio/ambient/", "background"), (r"audio/interface/alarm/", "alarm"),
        (r"audio/attack/impact/(arrow|shield|sling)_|audio/resource/(construction|mining|lumbering)/|"
         r"audio/actor/gate/", "knock"),
        (r"audio/voice/", "speech"), (r"audio/music/", "music")], max_clips_per_file=2,
        note="nature/town ambiences, alarm cues, impacts and tools, voices in reconstructed ancient languages"),
    Package("nexuiz-data", "train", [
        (r"sound/ambient/", "background"),
        (r"sound/announcer/male/|sound/tutorial/|sound/player/[^/]+/coms/", "speech"),
        (r"sound/misc/(footstep|metalfootstep|hitground|metalhitground|bodyimpact|armorimpact)", "knock")]),
    # added 2026-12-07 from a survey of bookworm main (crnn_runs/DEBIAN_SURVEY.md): recorded alarm, knock, glass
    Package("gnome-shell-pomodoro-data", "train", [(r"/sounds/(bell|loud-bell|timer|clock)\.ogg$", "alarm")],
            note="bells, a mechanical timer, a ticking clock"),
    Package("scorched3d-data", "train", [
        (r"/wav/misc/(policecar|firetruck|carhorn\d)\.wav$", "alarm"),     # not misc/beep*: near silent
        (r"/wav/explosions/(thud|bhit)\.wav$", "knock")], note="sirens and car horns"),
    Package("searchandrescue-data", "train", [
        (r"/sounds/(thud_(light|medium|heavy)|door_close|crash_(ground|obstruction)|land_belly2?)\.wav$", "knock")]),
    Package("lugaru-data", "train", [       # its Sounds/Alarm.ogg is a noise swell, not an alarm
        (r"/Sounds/(Thud|HeavyImpact|MetalHit|Land\d?|FootStepStone\d|WhooshHit|Clank\d|Staff(Head|Body|Break)|"
         r"Break)\.ogg$", "knock")], license="CC-BY-SA-3.0 (copyright file: Files: Data/*, installed as Sounds/)"),
    Package("brainparty-data", "train", [(r"/glass_break\.wav$", "glass"), (r"/(happy_ring|beep_hi)\.wav$", "alarm")]),
    Package("enigma-data", "train", [(r"/soundsets/enigma/shatter\.wav$", "glass")]),
    # ------------------------------------------------------------------ validation
    Package("openarena-data", "validation", [
        (r"sound/world/ambient/|sound/world/new/", "background"),
        (r"sound/movers/doors/|sound/player/footsteps/(boot|clank|flesh|mech)", "knock"),
        (r"sound/voices/", "speech")]),
    Package("asterisk-core-sounds-it-wav", "validation", ASTERISK, note="Italian voice prompts (8 kHz)"),
    Package("gcin-voice", "validation", [(r"\.(ogg|wav)$", "speech")], note="Mandarin syllables"),
    Package("warzone2100-music", "validation", [(r"\.ogg$", "music")]),
    Package("singularity-music", "validation", [(r"/music/[^/]+\.ogg$", "music")]),
    Package("hyperrogue-music", "validation", [(r"/music/", "music")]),
    Package("lincity-ng-data", "validation", [
        (r"/sounds/(WindowOpen|WindowClose|Raze\d|Build\d|School\d|SportsCroud\d)\.", None),
        (r"/sounds/", "background")]),
    Package("wordwarvi-sound", "validation", [
        (r"/missile_alarm", "alarm"), (r"/(metalbang\d|stonebang\d|clang|bodyslam|new_ground_smack)\.", "knock")]),
    Package("tuxtype-data", "validation", [(r"/sounds/(alarm|buzz)\.", "alarm"),
                                            (r"/sounds/(amidst_the_raindrops|chiptune2)\.", "music")]),
    Package("psi-plus-sounds", "validation", [(r"/(attention|reminder|chess_error)\.", "alarm")]),
    Package("freedroidrpg-data", "validation", [
        (r"/Glass_Break", "glass"), (r"/sound/music/", "music"),
        (r"/tux_ingame_comments/|/voice_samples/", "speech")]),
    Package("kolf", "validation", [(r"/(hit|wall|bumper)\.", "knock")]),
    # ------------------------------------------------------------------ test
    Package("asterisk-prompt-fr-armelle", "test", ASTERISK, note="French voice prompts (GSM, 8 kHz)"),
    Package("asterisk-prompt-es-co", "test", ASTERISK, note="Colombian Spanish voice prompts (GSM, 8 kHz)"),
    Package("boswars-data", "test", [(r"/units/\w+/\w+[._](ready|underattack|completed|select|action|attack)\.",
                                      "speech"), (r"/campaigns/|/intro/", "speech")],
            note="unit voice acknowledgements, narration"),
    Package("supertux-data", "test", [
        (r"/music/", "music"), (r"/speech/", "speech"),
        (r"/sounds/(phone|savebell\w*|ticking)\.", "alarm"),
        (r"/sounds/(icecrash|crystallo-shatter|cracking)\.", "glass"),
        (r"/sounds/(thud|brick|wood|door|kick|stomp|iceblock_bump|darthit)\.", "knock"),
        (r"/sounds/(rain|waterfall|fire|lava)\.", "background")]),
    Package("drascula-music", "test", [(r"/drascula/audio/", "music")]),
    Package("planetblupi-music-ogg", "test", [(r"\.ogg$", "music")]),
    Package("asc-music", "test", [(r"\.ogg$", "music")]),
    Package("openclonk-data", "test", [(r"Music\.ocg/", "music")]),
    Package("megaglest-data", "test", [
        (r"/tilesets/[^/]+/sounds/(day|night|rain)\w*\.", "background"),
        (r"/commondata/sounds/(tech_building_fall|worker_harvest_wood)\d", "knock")]),
    Package("deepin-sound-theme", "test", [(r"/(dialog-error\w*|power-unplug-battery-low)\.", "alarm")]),
    Package("pidgin-data", "test", [(r"/alert\.", "alarm")]),
    Package("heroes-sound-effects", "test", [(r"/(claxon|clock0\d)\.", "alarm")]),
    Package("freeciv-data", "test", [(r"/stdsounds/(woodbrk|metbrk|wall01|foot3)\.", "knock")]),
    Package("gajim", "test", [(r"/(attention|call_incoming|call_outgoing)\.", "alarm")]),
    Package("naev-data", "test", [(r"/music/", "music")], max_clips_per_file=2),
    Package("sound-icons", "test", [(r"/glass-water-1\.", "glass")]),
]


def _forbidden(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in NEVER_USE) or name in NEVER_TRAIN


def check_plan(packages=PACKAGES) -> None:
    """The issue's lists, enforced: no forbidden package anywhere, each package in one split."""
    names = [p.name for p in packages]
    bad = [n for n in names if _forbidden(n)]
    if bad:
        raise SystemExit(f"forbidden packages in the plan: {bad}")
    if len(set(names)) != len(names):
        raise SystemExit("a package appears twice")
    for p in packages:
        if p.split not in SPLIT_ORDER:
            raise SystemExit(f"{p.name}: bad split {p.split}")
        for _, label in p.rules:
            if label is not None and label not in LABELS:
                raise SystemExit(f"{p.name}: unknown label {label}")


# ------------------------------------------------------------------------------------ fetching

def fetch(pkg: str, cache: Path) -> tuple[Path, str]:
    """apt-get download + dpkg -x (once); returns (extracted root, version)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", "-q", pkg], cwd=debs, check=True, capture_output=True)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
    deb = found[-1]
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    root = cache / "x" / pkg
    if not root.is_dir():
        tmp = cache / "x" / f".{pkg}.tmp"
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        tmp.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(root)
    return root, version


def audio_files(root: Path):
    """Yield (path inside the package, opener) for every audio file, zip members as 'a.pk3!member'."""
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            full = Path(dirpath) / f
            rel = str(full.relative_to(root))
            if AUDIO_EXT.search(f):
                yield rel, (lambda full=full: full.read_bytes())
            elif CONTAINER_EXT.search(f):
                try:
                    with zipfile.ZipFile(full) as z:
                        members = sorted(i.filename for i in z.infolist() if AUDIO_EXT.search(i.filename))
                except zipfile.BadZipFile:
                    continue
                for m in members:
                    yield f"{rel}!{m}", (lambda full=full, m=m: _zip_member(full, m))


def _zip_member(path: Path, member: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(member)


def label_for(path: str, rules) -> str | None:
    for pattern, label in rules:
        if re.search(pattern, path, re.I):
            return label
    return None


def _sox_decode(data: bytes, name: str) -> tuple[np.ndarray, int]:
    import soundfile
    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / f"in{suffix}", Path(d) / "out.wav"
        src.write_bytes(data)
        head = ["-t", "gsm", "-r", "8000", "-c", "1"] if suffix == ".gsm" else []
        subprocess.run(["sox", *head, str(src), "-b", "16", "-c", "1", str(dst)], check=True, capture_output=True)
        y, rate = soundfile.read(str(dst), dtype="float64", always_2d=True)
    return y.mean(axis=1), int(rate)


def decode_clips(data: bytes, name: str, max_clips: int) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Bytes of one audio file -> ([(start sample at 16 kHz, mono 16 kHz clip)], source rate).  Files longer
    than CLIP_SECONDS give up to max_clips clips evenly spaced through the file (intro, middle, end of a
    track); only those windows are decoded (soundfile seeks), so long soundtracks cost little."""
    import soundfile
    if not name.lower().endswith(".gsm"):
        try:
            with soundfile.SoundFile(io.BytesIO(data)) as f:
                rate, frames = int(f.samplerate), f.frames
                n = int(CLIP_SECONDS * rate)
                out = []
                for start in _starts(frames, n, max_clips):
                    f.seek(start)
                    y = f.read(min(n, frames - start), dtype="float64", always_2d=True).mean(axis=1)
                    out.append((int(round(start * SR / rate)), to_16k(y, rate)))
                return out, rate
        except Exception:   # noqa: BLE001 - formats soundfile lacks (raw GSM, some WAV codecs): sox below
            pass
    y, rate = _sox_decode(data, name)
    n = int(CLIP_SECONDS * rate)
    return [(int(round(s * SR / rate)), to_16k(y[s:s + n], rate)) for s in _starts(y.size, n, max_clips)], rate


def _starts(frames: int, n: int, max_clips: int) -> list[int]:
    if frames <= n:
        return [0]
    k = frames // n
    return [int(i * n) for i in np.unique(np.linspace(0, k - 1, min(k, max_clips)).round().astype(int))]


def to_16k(y: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly
    if rate == SR:
        return y
    g = math.gcd(rate, SR)
    return resample_poly(y, SR // g, rate // g)


# ------------------------------------------------------------------------------------ licenses

def licenses(root: Path, pkg: str) -> list[tuple[str, str]]:
    """(files glob, license) stanzas of a DEP-5 copyright file; [('*', summary)] for free-form ones."""
    path = root / "usr" / "share" / "doc" / pkg / "copyright"
    if not path.is_file():
        return [("*", "unknown (no copyright file)")]
    text = path.read_text(errors="replace")
    stanzas, files = [], None
    for block in re.split(r"\n\s*\n", text):
        m_files = re.search(r"^Files:\s*(.+(?:\n[ \t]+.+)*)", block, re.M)
        m_lic = re.search(r"^License:\s*(.+)", block, re.M)
        if m_files and m_lic:
            files = m_files.group(1).split()
            stanzas += [(g, m_lic.group(1).strip()) for g in files]
    if stanzas:
        return stanzas
    found = sorted(set(re.findall(r"\b(GPL-?[23](?:\+| or later)?|GNU General Public License(?: version \d)?|"
                                  r"CC[- ]BY(?:-SA)?[- ]?[\d.]*|Creative Commons [\w -]+|public domain|"
                                  r"Artistic|BSD|MIT|LGPL[\d.+]*)", text, re.I)))
    return [("*", "free-form copyright file: " + ("; ".join(found[:4]) or "see file"))]


def license_for(path: str, stanzas) -> str:
    """The license of the most specific matching Files: glob (DEP-5 says the last match wins)."""
    best = "unknown"
    inner = path.replace("!", "/")
    for glob, lic in stanzas:
        if fnmatch.fnmatch(inner, glob) or fnmatch.fnmatch(inner, glob.lstrip("/")) or glob == "*" \
                or fnmatch.fnmatch(inner, "*/" + glob):
            best = lic
    return best


# ------------------------------------------------------------------------------------ per package

def process(pkg: Package, cache: Path, force: bool) -> list[dict]:
    out_npz = cache / "clips" / f"{pkg.name}.npz"
    out_rows = cache / "clips" / f"{pkg.name}.json"
    if out_npz.is_file() and out_rows.is_file() and not force:
        return json.loads(out_rows.read_text())
    root, version = fetch(pkg.name, cache)
    stanzas = licenses(root, pkg.name)
    rows, chunks, offset = [], [], 0
    for rel, read in audio_files(root):
        label = label_for(rel, pkg.rules)
        if label is None:
            continue
        try:
            clips, rate = decode_clips(read(), rel, pkg.max_clips_per_file)
        except Exception as e:  # noqa: BLE001 - a broken file is skipped and said so, not fatal
            print(f"  skip {pkg.name}:{rel}: {e}", file=sys.stderr)
            continue
        for start, clip in clips:
            if clip.size < MIN_CLIP_SECONDS * SR or not np.isfinite(clip).all() or np.max(np.abs(clip)) < 1e-4:
                continue            # too short, broken, or digital silence
            q = np.clip(np.round(clip * 32767), -32768, 32767).astype(np.int16)
            rows.append({"package": pkg.name, "version": version, "path": rel, "source_rate": rate,
                         "start_s": round(start / SR, 3), "duration_s": round(q.size / SR, 3), "label": label,
                         "split": pkg.split, "license": pkg.license or license_for(rel, stanzas),
                         "offset": offset, "samples": int(q.size)})
            chunks.append(q)
            offset += q.size
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_npz.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.concatenate(chunks) if chunks else np.zeros(0, np.int16))
    tmp.replace(out_npz)
    out_rows.write_text(json.dumps(rows))
    return rows


def clip_samples(cache: Path, rows: list[dict]):
    """The int16 samples of each given manifest row, in order (loads each package's .npz once)."""
    audio = {}
    for r in rows:
        if r["package"] not in audio:
            audio[r["package"]] = np.load(cache / "clips" / f"{r['package']}.npz")["audio"]
        yield audio[r["package"]][int(r["offset"]):int(r["offset"]) + int(r["samples"])]


def load_clips(cache: Path, rows: list[dict]) -> list[np.ndarray]:
    """float32 samples of the given manifest rows."""
    return [a.astype(np.float32) / 32768.0 for a in clip_samples(cache, rows)]


# ------------------------------------------------------------------------------------ cleaning

# A background file is a voice recording (radio, TV) when the VAD finds this much speech in one of its clips.  The
# VAD's hits on hum and animal calls in these packages last <= 2.9 s; the radio and TV voices talk for 7-9 s of 10.
VOICE_SECONDS = 3.0


def clip_hashes(cache: Path, rows: list[dict]) -> list[str]:
    """sha1 of every row's int16 samples."""
    return [hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest() for a in clip_samples(cache, rows)]


def copies(rows: list[dict], hashes: list[str]) -> list[list[dict]]:
    """Groups (two or more rows) whose clips hold identical samples, in manifest order."""
    groups = {}
    for r, h in zip(rows, hashes):
        groups.setdefault(h, []).append(r)
    return [g for g in groups.values() if len(g) > 1]


def drop_copies(rows: list[dict], hashes: list[str]) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): every distinct clip is kept once, in the first of train, validation, test that holds it,
    so no validation or test clip was heard in training (a package split alone does not promise that: packages
    share files) and no split weighs a recording twice.  A dropped row gets a "reason" naming the kept copy."""
    first = {}
    for i in sorted(range(len(rows)), key=lambda i: (SPLIT_ORDER.index(rows[i]["split"]), i)):
        first.setdefault(hashes[i], i)
    kept, dropped = [], []
    for i, (r, h) in enumerate(zip(rows, hashes)):
        if first[h] == i:
            kept.append(r)
        else:
            k = rows[first[h]]
            dropped.append(dict(r, reason=f"copy of {k['split']} {k['package']}:{k['path']} @ {k['start_s']}"))
    return kept, dropped


def speech_seconds(vad, y: np.ndarray) -> float:
    """Seconds of speech segments the VAD finds in y (mono, 16 kHz)."""
    return sum(s.end - s.start for s in vad.stream([np.asarray(y, np.float32)])) / SR


def flagged(vad, rows: list[dict], clips: list[np.ndarray], min_speech: float) -> list[tuple[dict, float]]:
    """(row, speech seconds) of the background rows whose clip holds >= min_speech s of speech."""
    out = []
    for r, y in zip(rows, clips):
        if r["label"] == "background":
            s = speech_seconds(vad, y)
            if s >= min_speech:
                out.append((r, s))
    return out


def drop_voices(rows: list[dict], hits: list[tuple[dict, float]]) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): all background clips of a file one of whose clips is in hits, a voice recording that
    would teach the tagger, or the calibration, that speech is background.  Not relabelled speech: the clips mix
    voices with noise and music, and some clips of the file hold no voice."""
    voice = {}
    for r, s in hits:
        voice[(r["package"], r["path"])] = max(s, voice.get((r["package"], r["path"]), 0.0))
    kept, dropped = [], []
    for r in rows:
        s = voice.get((r["package"], r["path"])) if r["label"] == "background" else None
        if s is None:
            kept.append(r)
        else:
            dropped.append(dict(r, reason=f"voice recording: {s:.1f} s of speech in one clip (VAD)"))
    return kept, dropped


def clean(cache: Path, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, dropped) after drop_copies, then drop_voices with edgelstm's VAD (silero-vad's model)."""
    try:
        from edgelstm.audio.vad import VAD
        vad = VAD()
    except Exception as e:  # noqa: BLE001 - the message says what to install
        raise SystemExit(f"the background voice check needs edgelstm's VAD (pip install -e '.[vad]'): {e}")
    rows, dropped = drop_copies(rows, clip_hashes(cache, rows))
    bg = [r for r in rows if r["label"] == "background"]
    rows, voices = drop_voices(rows, flagged(vad, bg, load_clips(cache, bg), VOICE_SECONDS))
    return rows, dropped + voices


def default_cache() -> Path:
    return Path(os.environ.get("EDGELSTM_REAL_AUDIO", Path.home() / ".cache" / "edgelstm" / "real_audio"))


def read_manifest(cache: Path, name: str = "manifest.csv") -> list[dict]:
    with open(cache / name, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def package_table(rows: list[dict]) -> str:
    """Markdown: one line per package (split, version, license(s), clips and minutes per label)."""
    by = {}
    for r in rows:
        d = by.setdefault(r["package"], {"split": r["split"], "version": r["version"], "lic": {}, "lab": {}})
        d["lic"][r["license"]] = d["lic"].get(r["license"], 0) + 1
        n, s = d["lab"].get(r["label"], (0, 0.0))
        d["lab"][r["label"]] = (n + 1, s + float(r["duration_s"]))
    notes = {p.name: p.note for p in PACKAGES}
    lines = ["| split | package (version) | clips: label (count, minutes) | license(s) as the copyright file says |",
             "|---|---|---|---|"]
    for name, d in sorted(by.items(), key=lambda kv: (SPLIT_ORDER.index(kv[1]["split"]), kv[0])):
        labs = ", ".join(f"{k} ({n}, {s / 60:.1f})" for k, (n, s) in sorted(d["lab"].items()))
        lic = "; ".join(sorted(d["lic"], key=lambda k: -d["lic"][k])[:3])
        note = f" - {notes[name]}" if notes.get(name) else ""
        lines.append(f"| {d['split']} | `{name}` ({d['version']}){note} | {labs} | {lic} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="decode again even if a package's clips exist")
    ap.add_argument("--only", nargs="*", help="process only these packages")
    args = ap.parse_args()
    check_plan()
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    plan = [p for p in PACKAGES if not args.only or p.name in args.only]
    # fetch serially (apt), decode in parallel
    for p in plan:
        fetch(p.name, cache)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        results = list(ex.map(process, plan, [cache] * len(plan), [args.force] * len(plan)))
    split_of = {p.name: p.split for p in PACKAGES}
    rows = [dict(r, split=split_of[r["package"]]) for rs in results for r in rs]   # the plan decides
    if args.only:   # merge with the rows (kept and dropped) of the packages not redone, then clean all again
        old = [{k: v for k, v in r.items() if k != "reason"}
               for name in ("manifest.csv", "dropped.csv") if (cache / name).is_file()
               for r in read_manifest(cache, name)]
        order = {p.name: i for i, p in enumerate(PACKAGES)}
        rows = sorted([r for r in old if r["package"] not in set(args.only)] + rows,
                      key=lambda r: (order[r["package"]], int(r["offset"])))    # the order process() wrote
    rows, dropped = clean(cache, rows)
    fields = ["package", "version", "path", "source_rate", "start_s", "duration_s", "label", "split", "license",
              "offset", "samples"]
    write_csv(cache / "manifest.csv", fields, rows)
    write_csv(cache / "dropped.csv", fields + ["reason"], dropped)
    for split in SPLIT_ORDER:
        d = [r for r in dropped if r["split"] == split]
        print(f"{split}: dropped {sum(r['reason'].startswith('copy') for r in d)} copies, "
              f"{sum(r['reason'].startswith('voice') for r in d)} background clips of voice recordings")
    hours = {s: {c: 0.0 for c in LABELS} for s in SPLIT_ORDER}
    clips = {s: {c: 0 for c in LABELS} for s in hours}
    for r in rows:
        hours[r["split"]][r["label"]] += float(r["duration_s"]) / 3600
        clips[r["split"]][r["label"]] += 1
    summary = {"hours": {s: {c: round(v, 3) for c, v in d.items()} for s, d in hours.items()}, "clips": clips}
    (cache / "hours.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{'class':<11}" + "".join(f"{s:>22}" for s in hours))
    for c in LABELS:
        print(f"{c:<11}" + "".join(f"{hours[s][c]:>12.2f} h {clips[s][c]:>6}" for s in hours))
    (cache / "packages.md").write_text(package_table(rows) + "\n")
    print(f"manifest: {cache / 'manifest.csv'} ({len(rows)} clips); per-package table: {cache / 'packages.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
