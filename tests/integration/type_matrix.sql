CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE type_matrix (
    id int PRIMARY KEY,
    c_int2 int2, c_int4 int4, c_int8 int8,
    c_float4 float4, c_float8 float8, c_nan float8, c_inf float8,
    c_numeric numeric, c_numeric_big numeric(30, 10),
    c_bool bool, c_text text, c_varchar varchar(10), c_char char(3), c_name name, c_qchar "char",
    c_json json, c_jsonb jsonb, c_uuid uuid,
    c_inet inet, c_cidr cidr, c_macaddr macaddr, c_money money, c_interval interval,
    c_enum mood, c_date date, c_date_inf date, c_ts timestamp, c_tstz timestamptz, c_time time,
    c_bytea bytea, c_int_arr int4[], c_text_arr2 text[], c_enum_arr mood[], c_empty_arr int4[],
    c_domain posint, c_composite pair, c_range int4range, c_tsrange tsrange,
    c_hstore hstore, c_citext citext, c_tsvector tsvector, c_xml xml,
    c_oid oid, c_regclass regclass, c_bit bit(4), c_point point, c_hstore_arr hstore[],
    c_numeric_nan numeric, c_ts_ninf timestamp, c_tstz_inf timestamptz, c_date_bc date,
    c_pair_arr pair[], c_range_arr2 int4range[], c_jsonb_arr jsonb[], c_uuid_arr uuid[], c_domain_arr posint[]
);
INSERT INTO type_matrix VALUES (
    1,
    -32768, 2147483647, 9223372036854775807,
    0.1, 1.0000000000000002, 'NaN', '-Infinity',
    '12345.678900', '-0.0000000001',
    true, 'héllo "world"', 'abc', 'ab', 'pg_class', 'x',
    '{"b": [1, 2.5, null], "a": "x"}', '{"b": 1, "a": {"c": true}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 1.5, '1 year 2 mons 3 days 04:05:06.5',
    'happy', '2024-02-29', 'infinity', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15+02', '13:14:15',
    '\xdeadbeef', '{1,NULL,3}', '{{a,b},{c,"d e"}}', '{sad,happy}', '{}',
    42, ROW(1, 'x y'), '[1,5)', '["2024-01-01 00:00","2024-01-02 00:00")',
    'a=>1, b=>NULL', 'MiXeD', 'the quick fox', '<a>1</a>',
    1259, 'pg_class', B'1010', '(1.5,2)', ARRAY['k=>v'::hstore],
    'NaN', '-infinity', 'infinity', '0044-03-15 BC',
    ARRAY[ROW(1, 'a'), ROW(2, NULL)]::pair[], '{{"[1,2)",NULL},{empty,"(,3]"}}',
    ARRAY['{"k": [1]}'::jsonb, 'null'::jsonb, NULL], '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{1,2}'
);
INSERT INTO type_matrix (id) VALUES (2);
