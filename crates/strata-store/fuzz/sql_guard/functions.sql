SELECT pg_read_file('/etc/passwd'), load_extension('x'), printf('%.*c', 200000000, 'x'), rpad(department_name, 100000000, 'y') FROM departments
