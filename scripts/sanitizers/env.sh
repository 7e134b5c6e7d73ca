# Sourced with a sanitizer build folder as $1 (Makefile san-build, scripts/test.sh): exports the
# runtime options of ThreadSanitizer, AddressSanitizer, LeakSanitizer and UBSan (each runtime reads
# only its own variable, so one set serves both builds). Every report goes to a file
# <build>/sanitizer-reports/<kind>.<pid>, also those of the child processes the tests start (the
# e2e `aquifer serve`, crash_writer, the CLI), whose output no test prints: scripts/test.sh fails
# when any such file exists and prints it. The first report ends the process (halt_on_error).
san_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SANITIZER_REPORTS=$(realpath -m "$1")/sanitizer-reports
mkdir -p "$SANITIZER_REPORTS"
export SANITIZER_REPORTS
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$san_dir/tsan.supp log_path=$SANITIZER_REPORTS/tsan"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=1 check_initialization_order=1 log_path=$SANITIZER_REPORTS/asan"
export LSAN_OPTIONS="suppressions=$san_dir/lsan.supp"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 log_path=$SANITIZER_REPORTS/ubsan"
unset san_dir
