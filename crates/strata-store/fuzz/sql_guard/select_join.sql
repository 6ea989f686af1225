SELECT e.employee_name, d.department_name FROM employees e JOIN departments d ON d.department_id = e.department_id WHERE e.hiring_date >= '2021-01-01' ORDER BY 1 LIMIT 10
