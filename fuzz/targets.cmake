# One line per fuzz target: aquifer_fuzz_target(<name> DEPS <modules>)
