/**
 * SQL listing the tenants whose ledger goes past their cursor: the followers
 * of the ledger (policy evaluator, query projector) poll with it. A skip scan
 * over the ledger's primary key finds each tenant once without reading its
 * entries; a tenant with no cursor row is at 0.
 */
export function tenantsPastCursorSql(cursorTable: 'policy_cursors' | 'query_cursors'): string {
  return `
    WITH RECURSIVE t AS (
      (SELECT tenant_id FROM ledger_entries ORDER BY tenant_id LIMIT 1)
      UNION ALL
      SELECT (SELECT e.tenant_id FROM ledger_entries e WHERE e.tenant_id > t.tenant_id ORDER BY e.tenant_id LIMIT 1)
      FROM t WHERE t.tenant_id IS NOT NULL
    )
    SELECT t.tenant_id FROM t
    LEFT JOIN ${cursorTable} c ON c.tenant_id = t.tenant_id
    WHERE t.tenant_id IS NOT NULL
      AND COALESCE(c.seq, 0) < (SELECT max(seq) FROM ledger_entries m WHERE m.tenant_id = t.tenant_id)`;
}
