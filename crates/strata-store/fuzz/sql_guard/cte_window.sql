WITH c AS (SELECT department_id, count(*) AS n FROM employees GROUP BY department_id) SELECT department_id, n, rank() OVER (ORDER BY n DESC) FROM c WHERE n > 2
