#!/usr/bin/env bash
# A private ActiveMQ Classic broker for tests (Debian's `activemq` package, run as the
# current user straight from /usr/share/activemq, no init script, all state under DIR):
#
#   tests/scripts/activemq.sh start  DIR   # boot in the background, wait until ready, print the ports
#   tests/scripts/activemq.sh status DIR   # exit 0 and print the ports if running, 3 if not
#   tests/scripts/activemq.sh stop   DIR   # SIGTERM (KILL if it hangs)
#
# `start` prints KEY=VALUE lines on stdout (also kept in DIR/ports.env), e.g.
#   ACTIVEMQ_STOMP_PORT=61623  ACTIVEMQ_STOMP_URL=stomp://admin:admin@127.0.0.1:61623
# so a caller can `eval "$(tests/scripts/activemq.sh start DIR)"`; progress goes to stderr.
# start and stop are idempotent. Nothing is installed here (tests/scripts/install-deps.sh does).
#
# The broker: STOMP only (no OpenWire), non-persistent by default, JMX off, password logins required
# (simpleAuthenticationPlugin; no anonymous access), and NACKed messages come back to their
# queue after ACTIVEMQ_REDELIVERY_DELAY ms (redeliveryPlugin; ActiveMQ's own default is to
# dead-letter them).
#
# Env (defaults in brackets; everything binds 127.0.0.1 only):
#   ACTIVEMQ_STOMP_PORT [61623]          (61613 is RabbitMQ's STOMP port in these tests)
#   ACTIVEMQ_USER / ACTIVEMQ_PASS [admin/admin]   groups admins,users
#   ACTIVEMQ_USER2 / ACTIVEMQ_PASS2 [user/user]   group users
#   ACTIVEMQ_MAX_FRAME_SIZE []           STOMP wireFormat.maxFrameSize in bytes (broker default if empty)
#   ACTIVEMQ_REDELIVERY_DELAY [1000]     ms before a NACKed message is redelivered (>= 1000)
#   ACTIVEMQ_HEAP [256m]                 -Xmx
#   ACTIVEMQ_PERSISTENT [false]          true: KahaDB under DIR/data, so persistent messages
#                                        survive a stop and start on the same DIR
#   ACTIVEMQ_START_TIMEOUT [60]          seconds until `start` gives up (and stops what it started)
set -uo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD="$1"
mkdir -p "$2" || exit 2
D="$(cd "$2" && pwd)"

AMQ_HOME=/usr/share/activemq
HOST=127.0.0.1
# status/stop (and a restart) of DIR use the port it was started with, unless told otherwise.
saved_port="$(sed -n 's/^ACTIVEMQ_STOMP_PORT=//p' "$D/ports.env" 2>/dev/null)"
STOMP_PORT="${ACTIVEMQ_STOMP_PORT:-${saved_port:-61623}}"
USER1="${ACTIVEMQ_USER:-admin}"
PASS1="${ACTIVEMQ_PASS:-admin}"
USER2="${ACTIVEMQ_USER2:-user}"
PASS2="${ACTIVEMQ_PASS2:-user}"
MAX_FRAME="${ACTIVEMQ_MAX_FRAME_SIZE:-}"
REDELIVERY_DELAY="${ACTIVEMQ_REDELIVERY_DELAY:-1000}"
HEAP="${ACTIVEMQ_HEAP:-256m}"
PERSISTENT="${ACTIVEMQ_PERSISTENT:-false}"
START_TIMEOUT="${ACTIVEMQ_START_TIMEOUT:-60}"

log() { echo "activemq.sh: $*" >&2; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }
listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' <<<"$1"; }

write_ports() {
    {
        echo "ACTIVEMQ_DIR=$D"
        echo "ACTIVEMQ_STOMP_PORT=$STOMP_PORT"
        echo "ACTIVEMQ_STOMP_URL=stomp://$USER1:$PASS1@$HOST:$STOMP_PORT"
        echo "ACTIVEMQ_USER=$USER1"
        echo "ACTIVEMQ_PASS=$PASS1"
        echo "ACTIVEMQ_USER2=$USER2"
        echo "ACTIVEMQ_PASS2=$PASS2"
    } >"$D/ports.env"
}

write_config() {
    mkdir -p "$D/conf" "$D/data" "$D/tmp"
    local uri="stomp://$HOST:$STOMP_PORT"
    [ -n "$MAX_FRAME" ] && uri="$uri?wireFormat.maxFrameSize=$MAX_FRAME"
    # Debian's classpath logs through log4j 1.2: the broker's log goes to DIR/data/activemq.log.
    cat >"$D/conf/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$D/data/activemq.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=%d | %-5p | %m | %c | %t%n
EOF
    cat >"$D/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
       http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="test" useJmx="false"
          persistent="$PERSISTENT" schedulerSupport="true" dataDirectory="$D/data">
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users>
          <authenticationUser username="$(xml_escape "$USER1")" password="$(xml_escape "$PASS1")" groups="admins,users"/>
          <authenticationUser username="$(xml_escape "$USER2")" password="$(xml_escape "$PASS2")" groups="users"/>
        </users>
      </simpleAuthenticationPlugin>
      <redeliveryPlugin fallbackToDeadLetter="true" sendToDlqIfMaxRetriesExceeded="true">
        <redeliveryPolicyMap>
          <redeliveryPolicyMap>
            <defaultEntry>
              <redeliveryPolicy maximumRedeliveries="5" initialRedeliveryDelay="$REDELIVERY_DELAY"
                                redeliveryDelay="$REDELIVERY_DELAY"/>
            </defaultEntry>
          </redeliveryPolicyMap>
        </redeliveryPolicyMap>
      </redeliveryPlugin>
    </plugins>
    <systemUsage>
      <systemUsage>
        <memoryUsage><memoryUsage limit="64 mb"/></memoryUsage>
        <tempUsage><tempUsage limit="256 mb"/></tempUsage>
      </systemUsage>
    </systemUsage>
    <transportConnectors>
      <transportConnector name="stomp" uri="$(xml_escape "$uri")"/>
    </transportConnectors>
  </broker>
</beans>
EOF
}

do_stop() {
    local p i sig
    p="$(pid_of "$D/activemq.pid")"
    if alive "$p"; then
        log "stopping broker (pid $p)"
        for sig in TERM KILL; do
            kill -s "$sig" "$p" 2>/dev/null
            for i in $(seq 1 100); do alive "$p" || break; sleep 0.1; done
            alive "$p" || break
            log "broker still running after SIG$sig"
        done
    fi
    rm -f "$D/activemq.pid"
    return 0
}

do_start() {
    local p
    p="$(pid_of "$D/activemq.pid")"
    if alive "$p" && [ -f "$D/ports.env" ] && listening "$STOMP_PORT"; then
        log "already running from $D (pid $p)"
        cat "$D/ports.env"
        return 0
    fi
    [ -f "$AMQ_HOME/bin/activemq.jar" ] || {
        log "$AMQ_HOME/bin/activemq.jar not found (apt-get install activemq; tests/scripts/install-deps.sh does)"
        return 1
    }
    command -v java >/dev/null || { log "java not found"; return 1; }
    do_stop >/dev/null 2>&1
    if listening "$STOMP_PORT"; then log "port $STOMP_PORT is already in use"; return 1; fi
    write_config
    local t0=$SECONDS
    setsid java -Xms64m "-Xmx$HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dactivemq.home="$AMQ_HOME" -Dactivemq.base="$D" -Dactivemq.conf="$D/conf" \
        -Dactivemq.data="$D/data" -Djava.io.tmpdir="$D/tmp" \
        -Dlog4j.configuration="file:$D/conf/log4j.properties" \
        -jar "$AMQ_HOME/bin/activemq.jar" start "xbean:file:$D/conf/activemq.xml" \
        </dev/null >>"$D/console.log" 2>&1 &
    p=$!
    echo "$p" >"$D/activemq.pid"
    local deadline=$((SECONDS + START_TIMEOUT))
    until listening "$STOMP_PORT"; do
        if ! alive "$p"; then
            log "broker exited before listening on $STOMP_PORT; logs:"
            tail -n 30 "$D/console.log" "$D/data/activemq.log" 2>/dev/null | sed 's/^/    /' >&2
            do_stop
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "broker not listening on $STOMP_PORT after ${START_TIMEOUT}s; logs:"
            tail -n 30 "$D/console.log" "$D/data/activemq.log" 2>/dev/null | sed 's/^/    /' >&2
            do_stop
            return 1
        fi
        sleep 0.1
    done
    write_ports
    log "ready in $((SECONDS - t0)) s (pid $p, state and logs in $D)"
    cat "$D/ports.env"
}

do_status() {
    local p
    p="$(pid_of "$D/activemq.pid")"
    if alive "$p" && [ -f "$D/ports.env" ] && listening "$STOMP_PORT"; then
        log "running (pid $p)"
        cat "$D/ports.env"
        return 0
    fi
    log "not running from $D"
    return 3
}

case "$CMD" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
