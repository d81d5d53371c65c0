import t from 'tap'
import { flipEveryByte } from './_bundle-flips.ts'

// Split from bundle.test.ts (the slow part): depths 2 and 4 here, depth 8 in bundle-flips-deep.test.ts.
flipEveryByte(t, [2, 4])
