#!/usr/bin/env bash
# Install or remove beepnet as a systemd service:
#
#   systemd/install.sh install      (what `make install-service` runs)
#   systemd/install.sh uninstall    (what `make uninstall-service` runs)
#
# install: creates the system user beepnet, installs beepnet into a venv of its own in
# /opt/beepnet/venv (without torch: the daemon does not need it), writes /etc/beepnet/beepnet.toml and
# /etc/beepnet/beepnet.env when they are missing, installs the unit and enables and
# (re)starts it when systemd is running. Running it again upgrades the venv in place and
# keeps the config, the token and the data.
# uninstall: stops and disables the service, removes the unit and the venv, and keeps
# /etc/beepnet, /var/lib/beepnet and the user.
#
# Settings, from the environment (the defaults are what the unit expects):
#   BEEPNET_PREFIX=/opt/beepnet             the venv goes to $BEEPNET_PREFIX/venv
#   BEEPNET_ETC=/etc/beepnet                beepnet.toml and beepnet.env
#   BEEPNET_UNIT_DIR=/etc/systemd/system    where beepnet.service goes
#   BEEPNET_STATE=/var/lib/beepnet          the data (StateDirectory=); only named in messages
#   BEEPNET_PYTHON=/usr/bin/python3         the interpreter the venv is made from
#   TORCH_SPEC=                             e.g. 'torch==2.13.*': also install torch and
#                                           the train extra, for the bot's full /retrain and
#                                           detector.runtime = "torch" (empty: no torch)
#   TORCH_INDEX=                            as in the Makefile: another index for torch
#   BEEPNET_PIP_ARGS=                       extra options for every pip call, e.g. --no-deps
#   BEEPNET_NO_SYSTEM=1                     touch nothing outside the directories above: no
#                                           apt, no user, no chown, no systemctl, no root
#                                           needed (for tests and staging trees)
# Paths other than the defaults are written into the installed unit.

set -euo pipefail

# The venv must be readable by the service user whatever root's umask is; the config
# files get their modes explicitly.
umask 022

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UNIT_SRC="$SRC/systemd/beepnet.service"

PREFIX=${BEEPNET_PREFIX:-/opt/beepnet}
ETC=${BEEPNET_ETC:-/etc/beepnet}
UNIT_DIR=${BEEPNET_UNIT_DIR:-/etc/systemd/system}
STATE=${BEEPNET_STATE:-/var/lib/beepnet}
NO_SYSTEM=${BEEPNET_NO_SYSTEM:-0}
# No torch by default: the service runs BeepNet in numpy (about 220 MB less memory, and
# several hundred MB less to download on a Pi).
TORCH_SPEC=${TORCH_SPEC:-}
TORCH_INDEX=${TORCH_INDEX:-}
read -r -a PIP_ARGS <<< "${BEEPNET_PIP_ARGS:-}"
if [ -n "${BEEPNET_PYTHON:-}" ]; then
    PYTHON=$BEEPNET_PYTHON
elif [ -x /usr/bin/python3 ]; then
    # Debian's interpreter: outside /home and /root, which the unit hides (ProtectHome=).
    PYTHON=/usr/bin/python3
else
    PYTHON=python3
fi

# Fixed names: the unit says User=beepnet, Group=beepnet, SupplementaryGroups=audio.
SERVICE=beepnet.service
USER_NAME=beepnet
VENV="$PREFIX/venv"
UNIT="$UNIT_DIR/$SERVICE"

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

for path in "$PREFIX" "$ETC" "$UNIT_DIR" "$STATE"; do
    case "$path" in
        /*) ;;
        *) die "$path: paths must be absolute (they go into the unit)" ;;
    esac
done

usage() {
    say "usage: $0 install|uninstall" >&2
    exit 2
}

# Root is needed for apt, useradd, /opt, /etc and systemctl; re-run through sudo, passing
# the settings above along (sudo drops the environment).
need_root() {
    [ "$NO_SYSTEM" = 1 ] && return 0
    [ "$(id -u)" -eq 0 ] && return 0
    command -v sudo >/dev/null || die "run this as root (sudo is not installed)"
    local vars=() name
    for name in BEEPNET_PREFIX BEEPNET_ETC BEEPNET_UNIT_DIR BEEPNET_STATE BEEPNET_PYTHON \
                BEEPNET_PIP_ARGS TORCH_SPEC TORCH_INDEX; do
        if [ -n "${!name+set}" ]; then
            vars+=("$name=${!name}")
        fi
    done
    say "not root: running again through sudo"
    exec sudo env "${vars[@]}" bash "${BASH_SOURCE[0]}" "$@"
}

systemd_running() { [ -d /run/systemd/system ]; }

# Run systemctl, or only say what would have been run.
run_systemctl() {
    if [ "$NO_SYSTEM" = 1 ]; then
        say "  (BEEPNET_NO_SYSTEM=1) skipped: systemctl $*"
    elif systemd_running; then
        systemctl "$@"
    else
        say "  (systemd is not running) skipped: systemctl $*"
    fi
}

# "install" with ownership only when the system is ours to change.
install_owned() {  # MODE OWNER GROUP install-args...
    local mode=$1 owner=$2 group=$3
    shift 3
    if [ "$NO_SYSTEM" = 1 ]; then
        install -m "$mode" "$@"
    else
        install -m "$mode" -o "$owner" -g "$group" "$@"
    fi
}

# --- install steps ---------------------------------------------------------------------

install_debs() {
    # The Makefile's system-deps installs portaudio19-dev (PyAudio builds against it), gcc,
    # the Python headers and python3-venv for this interpreter, when they are missing.
    [ "$NO_SYSTEM" = 1 ] && return 0
    say "== Debian packages"
    command -v make >/dev/null || die "make is needed: apt-get install make"
    make -C "$SRC" --no-print-directory system-deps PYTHON="$PYTHON"
}

create_user() {
    [ "$NO_SYSTEM" = 1 ] && return 0
    say "== user $USER_NAME"
    getent group audio >/dev/null || groupadd --system audio
    getent group "$USER_NAME" >/dev/null || groupadd --system "$USER_NAME"
    if ! id -u "$USER_NAME" >/dev/null 2>&1; then
        # No login, no home of its own: HOME is the state directory, which systemd creates.
        useradd --system --gid "$USER_NAME" --groups audio --no-create-home \
            --home-dir "$STATE" --shell /usr/sbin/nologin --comment "beepnet daemon" "$USER_NAME"
        say "created system user $USER_NAME (groups $USER_NAME, audio)"
    elif ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx audio; then
        usermod --append --groups audio "$USER_NAME"
        say "added $USER_NAME to group audio"
    else
        say "$USER_NAME exists"
    fi
}

check_python() {
    command -v "$PYTHON" >/dev/null || die "no Python interpreter $PYTHON (set BEEPNET_PYTHON)"
    # The venv links to its interpreter; ProtectHome= hides /home, /root and /run/user from
    # the service, so an interpreter there (pyenv, conda) would not start.
    local base
    base=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')
    case "$base/" in
        /home/* | /root/* | /run/user/*)
            if [ "$NO_SYSTEM" = 1 ]; then
                say "warning: $PYTHON lives in $base, which the service cannot see (ProtectHome=)"
            else
                die "$PYTHON lives in $base, which the service cannot see (ProtectHome=yes);" \
                    "use Debian's: BEEPNET_PYTHON=/usr/bin/python3 (or PYTHON=... for make)"
            fi
            ;;
    esac
}

install_venv() {
    say "== venv $VENV"
    check_python
    local pip=("$VENV/bin/python" -m pip)
    if [ -e "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
        # E.g. Debian moved to a new Python and the old interpreter is gone.
        say "the venv's interpreter no longer runs: making the venv again"
        rm -rf -- "$VENV"
    fi
    if [ ! -e "$VENV/bin/python" ]; then
        mkdir -p -- "$PREFIX"
        "$PYTHON" -m venv "$VENV"
        "${pip[@]}" install -q --upgrade pip "${PIP_ARGS[@]}"
    fi
    if [ -n "$TORCH_SPEC" ]; then
        # torch first and pinned, as the Makefile does, so that pip never picks another build.
        local index=()
        [ -n "$TORCH_INDEX" ] && index=(--index-url "$TORCH_INDEX")
        "${pip[@]}" install -q "$TORCH_SPEC" "${index[@]}" "${PIP_ARGS[@]}"
    fi
    # Build from a copy: building in the checkout would leave root-owned build/ and
    # *.egg-info there. Not editable: the service must not run code from a work tree.
    mkdir "$WORK/src"
    tar -C "$SRC" --exclude=__pycache__ -cf - pyproject.toml README.md beepnet models | tar -C "$WORK/src" -xf -
    local extra=""
    [ -n "$TORCH_SPEC" ] && extra="[train]"
    "${pip[@]}" install -q "${PIP_ARGS[@]}" "$WORK/src$extra"
    say "installed $("$VENV/bin/beepnet" --version) into $VENV"
}

write_config() {
    say "== config $ETC"
    # The service (group beepnet) may read the directory and beepnet.toml, not change them.
    install_owned 0750 root "$USER_NAME" -d "$ETC"
    if [ ! -e "$ETC/beepnet.toml" ]; then
        "$VENV/bin/beepnet" config --example > "$WORK/beepnet.toml"
        install_owned 0640 root "$USER_NAME" "$WORK/beepnet.toml" "$ETC/beepnet.toml"
        say "wrote $ETC/beepnet.toml (the commented example; every key is optional)"
    else
        say "kept $ETC/beepnet.toml"
    fi
    if [ ! -e "$ETC/beepnet.env" ]; then
        # Read by systemd as root (EnvironmentFile=) before it drops privileges: 0600 root.
        cat > "$WORK/beepnet.env" <<'EOF'
# beepnet's Telegram settings, passed to the service as environment variables.
# systemd reads this file as root before starting beepnet: keep it 0600 root:root.
# Remove the "#" and fill in (see "Telegram" in the README), then:
#   systemctl restart beepnet
#BEEPNET_TELEGRAM_TOKEN=123456789:AAH...
#BEEPNET_TELEGRAM_CHAT_ID=987654321
EOF
        install_owned 0600 root root "$WORK/beepnet.env" "$ETC/beepnet.env"
        say "wrote $ETC/beepnet.env (token placeholders, commented out)"
    else
        say "kept $ETC/beepnet.env"
        if [ -n "$(find "$ETC/beepnet.env" -perm /077)" ]; then
            say "warning: $ETC/beepnet.env holds the bot token but others may read it: chmod 600 it"
        fi
    fi
    check_config
}

# Check the config with the version just installed (an upgrade may reject an old key),
# with the token and chat id from beepnet.env as the service will see them. They reach
# beepnet through the environment of a subshell (export is a builtin), never through
# arguments: those of every process are readable by every user (ps, /proc/PID/cmdline).
check_config() {
    local out
    if out=$(export_env_file "$ETC/beepnet.env" &&
             "$VENV/bin/beepnet" config --config "$ETC/beepnet.toml" 2>&1 >/dev/null); then
        say "config OK"
    else
        say "warning: the service will not start until this is fixed:"
        say "  $out"
    fi
}

# Export the BEEPNET_* assignments of an EnvironmentFile= into this (sub)shell.
export_env_file() {
    local line value
    [ -r "$1" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        # Only well-formed names: export would echo a bad one, value and all, in its error.
        [[ $line =~ ^(BEEPNET_[A-Za-z0-9_]+)=(.*)$ ]] || continue
        value=${BASH_REMATCH[2]}
        # systemd strips one pair of quotes around a value; so do we.
        case "$value" in
            \"*\" | \'*\') value=${value:1:${#value}-2} ;;
        esac
        export "${BASH_REMATCH[1]}=$value"
    done < "$1"
}

install_unit() {
    say "== unit $UNIT"
    mkdir -p -- "$UNIT_DIR"
    # Point ExecStart= and EnvironmentFile= at the directories used here. (Relative names
    # like StateDirectory=beepnet stay: systemd places those under /var/lib, /run, /etc.)
    sed -e "s|/opt/beepnet|$(sed_escape "$PREFIX")|g" \
        -e "s|/etc/beepnet|$(sed_escape "$ETC")|g" "$UNIT_SRC" > "$WORK/$SERVICE"
    install -m 0644 "$WORK/$SERVICE" "$UNIT"
    run_systemctl daemon-reload
    run_systemctl enable "$SERVICE"
    # restart rather than start, so that an upgrade takes effect; --no-block because start-up
    # waits for the first audio block (up to TimeoutStartSec) and the installer need not.
    run_systemctl restart --no-block "$SERVICE"
}

# Escape a path for the replacement side of a sed s||| command.
sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }

install_all() {
    [ -r "$UNIT_SRC" ] || die "$UNIT_SRC is missing"
    # Scratch space for the build copy and the files before they are installed.
    WORK=$(mktemp -d)
    trap 'rm -rf -- "$WORK"' EXIT
    # Out of the checkout: "python -m pip" puts the current directory on sys.path, where
    # it would find the checkout's own beepnet.
    cd "$WORK"
    install_debs
    create_user
    install_venv
    write_config
    install_unit
    say ""
    if [ "$NO_SYSTEM" != 1 ] && ! systemd_running; then
        say "systemd is not running here (no /run/systemd/system), so the service could not be"
        say "enabled or started. On a machine that boots with systemd, run:"
        say "  systemctl daemon-reload && systemctl enable --now $SERVICE"
        say ""
    fi
    cat <<EOF
beepnet is installed as $SERVICE.
  program   $VENV
  config    $ETC/beepnet.toml   (set audio.device: \`$VENV/bin/beepnet devices\`)
  token     $ETC/beepnet.env    (BEEPNET_TELEGRAM_TOKEN, BEEPNET_TELEGRAM_CHAT_ID)
  data      $STATE   (outbox, alert clips)
After editing either file:  systemctl restart beepnet
Follow the log:             journalctl -u beepnet -f
Check the service:          systemctl status beepnet
Check Telegram:             sudo sh -c 'set -a; . $ETC/beepnet.env; exec $VENV/bin/beepnet notify-test --config $ETC/beepnet.toml'
EOF
}

# --- uninstall -------------------------------------------------------------------------

uninstall_all() {
    if [ -e "$UNIT" ]; then
        # disable --now stops it too. A unit systemd never loaded cannot be stopped: go on.
        run_systemctl disable --now "$SERVICE" || say "warning: could not stop $SERVICE"
        rm -f -- "$UNIT"
        say "removed $UNIT"
        run_systemctl daemon-reload
        if [ "$NO_SYSTEM" != 1 ] && systemd_running; then
            systemctl reset-failed "$SERVICE" 2>/dev/null || true
        fi
    else
        say "no $UNIT"
    fi
    if [ -e "$VENV/pyvenv.cfg" ]; then
        rm -rf -- "$VENV"
        say "removed $VENV"
        rmdir -- "$PREFIX" 2>/dev/null || true
    elif [ -e "$VENV" ]; then
        die "$VENV is not a venv (no pyvenv.cfg): not removing it"
    else
        say "no $VENV"
    fi
    cat <<EOF

Kept the config and token in $ETC, the data in $STATE and the user $USER_NAME.
To remove them too:  rm -rf $ETC $STATE && userdel $USER_NAME
EOF
}

[ $# -eq 1 ] || usage
case "$1" in
    install) need_root "$@"; install_all ;;
    uninstall) need_root "$@"; uninstall_all ;;
    *) usage ;;
esac
