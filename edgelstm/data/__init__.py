"""The files bundled with the package and their paths: the one place the CLI, the audio pipeline, the
benchmarks and the tests take them from."""
from pathlib import Path

DATA = Path(__file__).resolve().parent
AUDIO_MODEL = DATA / "audio_tagger.elstm"          # int8 audio tagger (edgelstm tag's default)
AUDIO_MODEL_F32 = DATA / "audio_tagger_f32.elstm"  # its float source
AUDIO_CALIBRATION = DATA / "audio_calibration.npy"
SAMPLE_CLIP = DATA / "sample_0.wav"                # edgelstm tag's default clip
DEMO_MODEL = DATA / "tagger_gru_int8.elstm"        # edgelstm demo's model, features and labels
DEMO_FEATURES = DATA / "demo_features.npy"
DEMO_LABELS = DATA / "demo_labels.npy"
CALIBRATION = DATA / "calibration.npy"
VAD_CALIBRATION = DATA / "vad_calibration.wav"    # recorded speech + ambience for the int8 VAD (sources: .json)

__all__ = ["DATA", "AUDIO_MODEL", "AUDIO_MODEL_F32", "AUDIO_CALIBRATION", "SAMPLE_CLIP", "DEMO_MODEL",
           "DEMO_FEATURES", "DEMO_LABELS", "CALIBRATION", "VAD_CALIBRATION"]
