"""Audio constants, in one place. Training, export and the runtime all read them from here.

They are Whisper's front-end constants: the on-device model sits on a Whisper encoder, so the features
must be computed exactly as Whisper computes them.
"""

SAMPLE_RATE = 16_000  # Hz, every model input is resampled to this
N_FFT = 400  # 25 ms analysis window
HOP_LENGTH = 160  # 10 ms frame shift -> 100 feature frames per second
N_MELS = 80
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
LOG_FLOOR = 1e-10  # power floor before log10, as Whisper
DYNAMIC_RANGE = 8.0  # log10 units kept below the window maximum (80 dB), as Whisper
LEVEL_PEAK = 1.0  # log10-mel peak a level-normalised window is moved to (speech at about -24 dBFS RMS)
