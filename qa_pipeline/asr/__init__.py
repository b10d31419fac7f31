"""The ASR stage: Whisper over VAD segments (:mod:`.engine`, :mod:`.fitted`), its results
(:mod:`.result`), guard, decoder bias, model and the verification decode; its config
section is :mod:`.config`."""
