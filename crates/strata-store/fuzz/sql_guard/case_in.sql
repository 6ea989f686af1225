SELECT CASE WHEN job_id IN (1, 2, 3) THEN 'low' WHEN job_id BETWEEN 4 AND 9 THEN 'mid' ELSE 'high' END AS band, count(*) FROM hr.employees GROUP BY 1
