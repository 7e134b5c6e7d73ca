SELECT E'\\', E'\' FROM x.y', e'a''b\'c', '\', b'01', x'ff', n'z' FROM p.t
