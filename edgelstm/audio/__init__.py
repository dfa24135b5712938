"""Audio tagging: WAV/raw/microphone readers, a streaming log-mel front end (numpy), the tagging pipeline."""
from .features import FrontEnd, LogMel, logmel, mel_filters
from .io import read_microphone, read_raw, read_wav, write_wav
from .tagger import AudioConfig, Event, EventTracker, Tagger, TagSummary
from .vad import VAD, Segment, SpeechSegmenter, VADSummary

__all__ = ["FrontEnd", "LogMel", "logmel", "mel_filters", "read_wav", "read_raw", "read_microphone", "write_wav",
           "AudioConfig", "Event", "EventTracker", "Tagger", "TagSummary", "VAD", "Segment",
           "SpeechSegmenter", "VADSummary"]
