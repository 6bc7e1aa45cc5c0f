import { describeStoreContract } from './contract';
import { describeStoreConcurrency } from './concurrency';
import { STORE_FACTORIES } from './factories';
import { describeStoreSubjects } from './subjects';
import { describeStoreRetention } from './retention';

for (const factory of STORE_FACTORIES) {
  describe(`store conformance / ${factory.name}`, function () {
    this.timeout(60_000);
    before(async function () {
      await factory.available?.(this);
    });
    describeStoreContract(factory);
    describeStoreConcurrency(factory);
    describeStoreSubjects(factory);
    describeStoreRetention(factory);
  });
}
