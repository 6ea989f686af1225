SELECT CAST(employee_id AS text) || ':' || employee_name, employee_id::bigint, '2021-01-01'::date FROM employees
