# One line per fuzz target: aquifer_fuzz_target(<name> DEPS <modules>)
aquifer_fuzz_target(cursor_decode DEPS aquifer_driver)
