SELECT * FROM pg_catalog.pg_class c, sqlite_master
