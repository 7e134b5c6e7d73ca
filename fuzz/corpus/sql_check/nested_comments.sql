SELECT 1 /**/ /*/ FROM x.y */ /* a /* b /* c */ FROM x.y */ FROM z.w */ 2*/*x*/3 +-- FROM v.w
FROM p.t
