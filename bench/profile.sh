# Sourced by every bench script (lib.sh sources it too): which build of the
# host programs (the node and the baselines' clients and servers) runs.
# They are built with the `dist` profile, as a node is shipped;
# NUBO_PROFILE=release measures the plain release build instead.
PROFILE="${NUBO_PROFILE:-dist}"
BIN="target/$PROFILE"
build_host() { cargo build --profile "$PROFILE" -q "$@"; }
