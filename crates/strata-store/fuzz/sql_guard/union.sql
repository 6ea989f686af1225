SELECT department_id FROM departments UNION SELECT department_id FROM employees EXCEPT SELECT 3 INTERSECT SELECT 4
