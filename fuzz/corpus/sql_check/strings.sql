SELECT 'FROM x', E'it\'s FROM y', $$ FROM z $$, $q$ FROM w $q$ -- FROM v
FROM p.t