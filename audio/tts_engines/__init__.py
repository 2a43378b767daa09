"""TTS engines behind `audio.tts.TtsEngine`: Piper in-process, espeak-ng, Coqui XTTS (GPU extra)."""
