import { Injectable } from '@nestjs/common';
import { toHex } from '../core/encoding';
import {
  assembleConsistencyProof,
  assembleInclusionProof,
  consistencyProofRefs,
  inclusionProofRefs,
  nodeKey,
  type NodeRef,
} from '../core/merkle';
import type { ConsistencyProof, InclusionProof } from './dto/proofs.dto';
import { LedgerError } from './ledger.errors';
import { LedgerService } from './ledger.service';

/**
 * RFC 9162 inclusion and consistency proofs, assembled from the stored
 * complete nodes (one lookup by primary key for all of a proof's nodes), never
 * from a rebuild: O(log n) rows for any tree size.
 */
@Injectable()
export class ProofsService {
  constructor(private readonly ledger: LedgerService) {}

  async inclusion(tenant: string, seq: number, treeSize?: number): Promise<InclusionProof> {
    const size = await this.sizeWithin(tenant, treeSize, 'query.tree_size');
    if (seq > size) {
      throw LedgerError.badRange('query.seq', size === 0 ? 'the ledger is empty' : `must not exceed tree_size ${size}`);
    }
    const index = seq - 1;
    const leaf: NodeRef = { level: 0, index };
    const nodes = await this.ledger.nodes(tenant, [leaf, ...inclusionProofRefs(index, size)]);
    const path = assembleInclusionProof(index, size, (r) => nodes.get(nodeKey(r))!);
    return { leaf_index: index, tree_size: size, leaf_hash: toHex(nodes.get(nodeKey(leaf))!), path: path.map(toHex) };
  }

  async consistency(tenant: string, fromSize: number, toSize?: number): Promise<ConsistencyProof> {
    const to = await this.sizeWithin(tenant, toSize, 'query.to_size');
    if (fromSize > to) {
      throw LedgerError.badRange('query.from_size', to === 0 ? 'the ledger is empty' : `must not exceed to_size ${to}`);
    }
    const nodes = await this.ledger.nodes(tenant, consistencyProofRefs(fromSize, to));
    const path = assembleConsistencyProof(fromSize, to, (r) => nodes.get(nodeKey(r))!);
    return { from_size: fromSize, to_size: to, path: path.map(toHex) };
  }

  /** The requested tree size, or the head when none is given; never above the head. */
  private async sizeWithin(tenant: string, requested: number | undefined, field: string): Promise<number> {
    const head = await this.ledger.size(tenant);
    if (requested === undefined) return head;
    if (requested > head) throw LedgerError.badRange(field, `the ledger has ${head} entries`);
    return requested;
  }
}
