SELECT 0x1f, 0begin, 1_000, 1__0, 1._5, 1.5e-3, 1e+, 1..2, .5 FROM p.t
