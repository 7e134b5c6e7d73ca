SELECT $a$ $b$ FROM x.y $b$ $a$, $tag$ $tagx$ $x$ $tag$, $$$$, a$$b, $1 FROM p.t
