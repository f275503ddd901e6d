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
    return this.atSize(tenant, treeSize, 'query.tree_size', async (size) => {
      if (seq > size) {
        throw LedgerError.badRange('query.seq', size === 0 ? 'the ledger is empty' : `must not exceed tree_size ${size}`);
      }
      const index = seq - 1;
      const leaf: NodeRef = { level: 0, index };
      const nodes = await this.ledger.nodes(tenant, [leaf, ...inclusionProofRefs(index, size)]);
      const path = assembleInclusionProof(index, size, (r) => nodes.get(nodeKey(r))!);
      return { leaf_index: index, tree_size: size, leaf_hash: toHex(nodes.get(nodeKey(leaf))!), path: path.map(toHex) };
    });
  }

  async consistency(tenant: string, fromSize: number, toSize?: number): Promise<ConsistencyProof> {
    return this.atSize(tenant, toSize, 'query.to_size', async (to) => {
      if (fromSize > to) {
        throw LedgerError.badRange('query.from_size', to === 0 ? 'the ledger is empty' : `must not exceed to_size ${to}`);
      }
      const nodes = await this.ledger.nodes(tenant, consistencyProofRefs(fromSize, to));
      const path = assembleConsistencyProof(fromSize, to, (r) => nodes.get(nodeKey(r))!);
      return { from_size: fromSize, to_size: to, path: path.map(toHex) };
    });
  }

  /**
   * `work` for the requested tree size, or for the head when none is given;
   * never above the head. With a size given, the head check and the node
   * lookup run side by side (one round trip less); the head check's answer
   * comes first, so a size above the head is a 400 however the lookup ended.
   */
  private async atSize<T>(tenant: string, requested: number | undefined, field: string, work: (size: number) => Promise<T>): Promise<T> {
    if (requested === undefined) return work(await this.ledger.size(tenant));
    const [head, result] = await Promise.allSettled([this.ledger.size(tenant), work(requested)]);
    if (head.status === 'rejected') throw head.reason;
    if (requested > head.value) throw LedgerError.badRange(field, `the ledger has ${head.value} entries`);
    if (result.status === 'rejected') throw result.reason;
    return result.value;
  }
}
