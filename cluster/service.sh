#!/usr/bin/env bash
# Start a long-running service on a node exactly once, or stop it: the head's MLflow server and its
# backup loop in cluster/local.yaml and cluster/config.yaml.
#
#   bash ~/flosssweep/cluster/service.sh start NAME [--port PORT] -- COMMAND [ARGS...]
#   bash ~/flosssweep/cluster/service.sh stop NAME [NAME...]
#
# `start` runs COMMAND in the background (log: ~/NAME.log) unless the process recorded in
# ~/.flosssweep/NAME.pid still runs, so a second `ray up` leaves a running service alone. The record
# holds the PID and the process's start time, so a PID reused by another program does not count.
# Why not `pgrep -f 'mlflow server' || ...`: Ray runs every start command as
# `bash --login -c -i '<command>'`, and that shell's own command line matches the pattern, so the
# service never started.
# With --port, `start` waits up to FLOSSSWEEP_SERVICE_WAIT seconds (default 120) for 127.0.0.1:PORT
# to answer HTTP, and exits 1 with the end of the log if it does not, or if the service dies
# first, or if another program already holds the port: `ray up` stops there instead of reporting
# success with no MLflow behind it.
set -euo pipefail

state="$HOME/.flosssweep"
wait_seconds="${FLOSSSWEEP_SERVICE_WAIT:-120}"

usage() {
    echo "usage: service.sh start NAME [--port PORT] -- COMMAND [ARGS...] | service.sh stop NAME [NAME...]" >&2
    exit 2
}

started_at() { # the process's start time in clock ticks since boot (field 22 of /proc/PID/stat);
    # nothing for a process that has exited and waits to be reaped (state Z)
    local stat
    stat=$(cat "/proc/$1/stat" 2> /dev/null) || return 1
    stat=${stat##*) }
    set -- $stat
    [[ $1 != Z ]] || return 1
    echo "${20}"
}

running() { # the PID recorded for NAME, if that very process still runs
    local record="$state/$1.pid" pid since
    [[ -s $record ]] || return 1
    read -r pid since < "$record"
    [[ $(started_at "$pid" || true) == "$since" ]] && echo "$pid"
}

answering() { # an HTTP reply on 127.0.0.1:PORT: a bound port alone is not yet a server that serves
    local status=""
    { exec 3<> "/dev/tcp/127.0.0.1/$1"; } 2> /dev/null || return 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 2> /dev/null || true
    read -r -t 10 status <&3 || true
    exec 3>&-
    [[ $status == HTTP/* ]]
}

failed() {
    echo "service.sh: $1; the end of $log:" >&2
    tail -n 30 "$log" >&2 2> /dev/null || true
    exit 1
}

[[ $# -ge 2 ]] || usage
action=$1
shift
mkdir -p "$state"

if [[ $action == stop ]]; then
    for name in "$@"; do
        if pid=$(running "$name"); then
            kill "$pid" && echo "stopped $name (pid $pid)"
        else
            echo "$name: not running"
        fi
        rm -f "$state/$name.pid"
    done
    exit 0
fi

[[ $action == start ]] || usage
name=$1
shift
port=""
if [[ ${1:-} == --port ]]; then
    port=${2:?--port needs a number}
    shift 2
fi
[[ ${1:-} == -- ]] || usage
shift
[[ $# -ge 1 ]] || usage
log="$HOME/$name.log"

if pid=$(running "$name"); then
    echo "$name already runs (pid $pid)"
else
    if [[ -n $port ]] && answering "$port"; then
        failed "127.0.0.1:$port is taken by a process this script did not start; stop it, then run ray up again"
    fi
    nohup "$@" > "$log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid $(started_at "$pid")" > "$state/$name.pid"
    echo "started $name (pid $pid, log $log)"
fi

if [[ -n $port ]]; then
    for ((second = 0; second < wait_seconds; second++)); do
        answering "$port" && { echo "$name answers on 127.0.0.1:$port"; exit 0; }
        running "$name" > /dev/null || failed "$name (pid $pid) exited before answering on 127.0.0.1:$port"
        sleep 1
    done
    failed "$name (pid $pid) did not answer on 127.0.0.1:$port within $wait_seconds s"
fi
