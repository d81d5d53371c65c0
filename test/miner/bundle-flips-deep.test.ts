import t from 'tap'
import { flipEveryByte } from './_bundle-flips.ts'

// Split from bundle.test.ts (the slow part): depth 8 here, depths 2 and 4 in bundle-flips.test.ts.
flipEveryByte(t, [8])
