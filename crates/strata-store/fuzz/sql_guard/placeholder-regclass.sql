SELECT 'tenant_other.departments'@:regclass::text
