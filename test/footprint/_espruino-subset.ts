/** @module A checker for the JavaScript Espruino runs (espruino.com/Features), on the TypeScript compiler's parse tree. */
import ts from 'typescript'

/** One construct Espruino would not run as written. */
export interface Violation {
  rule: string
  line: number
  text: string
}

// Globals and methods the Features page lists as missing, or that come from later editions it does not list.
// (`process` is not among them: Espruino has its own, with memory(), env and the uncaughtException event.)
const MISSING_GLOBALS = new Set([
  'Map',
  'Set',
  'WeakMap',
  'WeakSet',
  'WeakRef',
  'FinalizationRegistry',
  'Symbol',
  'Proxy',
  'Reflect',
  'BigInt',
  'BigInt64Array',
  'BigUint64Array',
  'TextEncoder',
  'TextDecoder',
  'Buffer',
  'globalThis',
  'queueMicrotask',
  'structuredClone',
  'Intl',
])
const MISSING_STATICS: Record<string, string[]> = {
  Object: [
    'freeze',
    'seal',
    'preventExtensions',
    'isFrozen',
    'isSealed',
    'isExtensible',
    'entries',
    'values',
    'fromEntries',
    'hasOwn',
  ],
  Number: [
    'isSafeInteger',
    'isInteger',
    'isNaN',
    'isFinite',
    'EPSILON',
    'MAX_SAFE_INTEGER',
    'MIN_SAFE_INTEGER',
    'parseFloat',
    'parseInt',
  ],
  Math: ['trunc', 'sign', 'cbrt', 'log2', 'log10', 'hypot', 'fround', 'imul', 'clz32'],
  Array: ['from', 'of'],
  String: ['raw', 'fromCodePoint'],
  Promise: ['allSettled', 'any'],
}
const MISSING_METHODS = new Set([
  'lastIndexOf',
  'padStart',
  'padEnd',
  'includes',
  'at',
  'flat',
  'flatMap',
  'codePointAt',
  'normalize',
  'trimStart',
  'trimEnd',
  'matchAll',
  'replaceAll',
  'copyWithin',
  'findLast',
  'findLastIndex',
])
const STATEMENTS_WITH_SEMICOLON = new Set([
  ts.SyntaxKind.ExpressionStatement,
  ts.SyntaxKind.VariableStatement,
  ts.SyntaxKind.ReturnStatement,
  ts.SyntaxKind.ThrowStatement,
  ts.SyntaxKind.BreakStatement,
  ts.SyntaxKind.ContinueStatement,
  ts.SyntaxKind.DoStatement,
])

/** True when a regular expression source uses a quantifier Espruino reads as plain characters: "?" or {m,n}. */
export function hasMissingQuantifier(pattern: string): boolean {
  let inClass = false
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === '\\') i++
    else if (inClass) inClass = c !== ']'
    else if (c === '[') inClass = true
    else if (c === '?' || (c === '{' && /^\{\d*,?\d*\}/.test(pattern.slice(i)))) return true
  }
  return false
}

function isFunctionLike(node: ts.Node): node is ts.FunctionLikeDeclaration {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isFunctionExpression(node) ||
    ts.isArrowFunction(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node) ||
    ts.isConstructorDeclaration(node)
  )
}

/** Every construct in `source` that Espruino lacks or runs differently, with a rule name and the line it is on. */
export function espruinoViolations(fileName: string, source: string): Violation[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS)
  const out: Violation[] = []
  const report = (rule: string, node: ts.Node): void => {
    const { line } = file.getLineAndCharacterOfPosition(node.getStart(file))
    out.push({ rule, line: line + 1, text: node.getText(file).split('\n')[0]!.slice(0, 80) })
  }

  const program = ts.createProgram({
    rootNames: [fileName],
    options: { allowJs: true, noEmit: true, noResolve: true },
    host: {
      ...ts.createCompilerHost({}),
      getSourceFile: name => (name === fileName ? file : undefined),
      fileExists: name => name === fileName,
      readFile: name => (name === fileName ? source : undefined),
    },
  })
  for (const d of program.getSyntacticDiagnostics(file)) {
    const { line } = file.getLineAndCharacterOfPosition(d.start ?? 0)
    out.push({ rule: 'syntax error', line: line + 1, text: ts.flattenDiagnosticMessageText(d.messageText, ' ') })
  }

  // Function hoisting: a top-level statement may only call functions declared above it.
  const topFunctions = new Map<string, number>()
  file.statements.forEach((s, i) => {
    if (ts.isFunctionDeclaration(s) && s.name) topFunctions.set(s.name.text, i)
  })
  file.statements.forEach((s, i) => {
    const visitTop = (node: ts.Node): void => {
      if (isFunctionLike(node)) return
      if ((ts.isCallExpression(node) || ts.isNewExpression(node)) && ts.isIdentifier(node.expression)) {
        const declared = topFunctions.get(node.expression.text)
        if (declared !== undefined && declared > i) report('function used before its declaration (no hoisting)', node)
      }
      ts.forEachChild(node, visitTop)
    }
    visitTop(s)
  })

  // Comments inside function bodies: every token of a body, its leading and trailing trivia.
  const checkComments = (node: ts.Node): void => {
    for (const child of node.getChildren(file)) {
      const ranges = [
        ...(ts.getLeadingCommentRanges(source, child.pos) ?? []),
        ...(ts.getTrailingCommentRanges(source, child.end) ?? []),
      ]
      for (const r of ranges) {
        if (r.pos > node.pos && r.end < node.end) {
          const { line } = file.getLineAndCharacterOfPosition(r.pos)
          out.push({
            rule: 'comment inside a function body',
            line: line + 1,
            text: source.slice(r.pos, Math.min(r.end, r.pos + 80)),
          })
        }
      }
      checkComments(child)
    }
  }

  const visit = (node: ts.Node): void => {
    if (isFunctionLike(node) && node.body !== undefined && ts.isBlock(node.body)) checkComments(node.body)
    if (ts.isVariableDeclarationList(node) && (node.flags & (ts.NodeFlags.Let | ts.NodeFlags.Const)) !== 0)
      report('let/const (treated as var)', node)
    if (ts.isParameter(node)) {
      if (node.initializer !== undefined) report('default parameter value', node)
      if (node.dotDotDotToken !== undefined) report('rest parameter', node)
    }
    if (ts.isSpreadElement(node) || ts.isSpreadAssignment(node)) report('spread', node)
    if (ts.isObjectBindingPattern(node) || ts.isArrayBindingPattern(node)) report('destructuring', node)
    if (
      ts.isBinaryExpression(node) &&
      node.operatorToken.kind === ts.SyntaxKind.EqualsToken &&
      (ts.isObjectLiteralExpression(node.left) || ts.isArrayLiteralExpression(node.left))
    )
      report('destructuring', node)
    if (ts.isShorthandPropertyAssignment(node)) report('shorthand property', node)
    if (ts.isComputedPropertyName(node)) report('computed property name', node)
    if (ts.isMethodDeclaration(node) && ts.isObjectLiteralExpression(node.parent))
      report('method shorthand in an object literal', node)
    if (
      ts.isImportDeclaration(node) ||
      ts.isExportDeclaration(node) ||
      ts.isExportAssignment(node) ||
      ts.isImportEqualsDeclaration(node)
    )
      report('ES module syntax', node)
    if (ts.canHaveModifiers(node) && ts.getModifiers(node)?.some(m => m.kind === ts.SyntaxKind.ExportKeyword))
      report('ES module syntax', node)
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword)
      report('dynamic import', node)
    if (ts.isMetaProperty(node)) report('import.meta / new.target', node)
    if (ts.canHaveModifiers(node) && ts.getModifiers(node)?.some(m => m.kind === ts.SyntaxKind.AsyncKeyword))
      report('async function', node)
    if (ts.isAwaitExpression(node)) report('await', node)
    if (isFunctionLike(node) && (node as ts.FunctionDeclaration).asteriskToken !== undefined) report('generator', node)
    if (ts.isYieldExpression(node)) report('yield', node)
    if (ts.isForOfStatement(node)) report('for...of (iterators)', node)
    if (ts.isLabeledStatement(node)) report('label', node)
    if (ts.isWithStatement(node)) report('with', node)
    if (ts.isTaggedTemplateExpression(node)) report('tagged template', node)
    if (ts.isPropertyDeclaration(node) || ts.isClassStaticBlockDeclaration(node))
      report('class field or static block', node)
    if (ts.isPrivateIdentifier(node)) report('private name', node)
    if (ts.isHeritageClause(node) && node.types.some(t => !ts.isIdentifier(t.expression)))
      report('class inheritance from an expression', node)
    if (
      (ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node) || ts.isCallExpression(node)) &&
      node.questionDotToken !== undefined
    ) {
      report('optional chaining', node)
    }
    if (ts.isBinaryExpression(node)) {
      const op = node.operatorToken.kind
      if (op === ts.SyntaxKind.QuestionQuestionToken || op === ts.SyntaxKind.QuestionQuestionEqualsToken)
        report('nullish coalescing', node)
      if (op === ts.SyntaxKind.BarBarEqualsToken || op === ts.SyntaxKind.AmpersandAmpersandEqualsToken)
        report('logical assignment', node)
      if (op === ts.SyntaxKind.AsteriskAsteriskToken || op === ts.SyntaxKind.AsteriskAsteriskEqualsToken)
        report('exponent operator', node)
    }
    if (ts.isBigIntLiteral(node)) report('BigInt literal', node)
    if (ts.isNumericLiteral(node) && node.getText(file).includes('_')) report('numeric separator', node)
    if (ts.isRegularExpressionLiteral(node) && /\/[a-z]*[suyd][a-z]*$/.test(node.text))
      report('regular expression flag s, u, y or d', node)
    if (ts.isRegularExpressionLiteral(node) && hasMissingQuantifier(node.text.slice(1, node.text.lastIndexOf('/'))))
      report('regular expression quantifier ? or {m,n} (Espruino matches them literally)', node)
    if (
      ts.isNewExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === 'RegExp' &&
      node.arguments?.[0] !== undefined &&
      ts.isStringLiteral(node.arguments[0]) &&
      hasMissingQuantifier(node.arguments[0].text)
    )
      report('regular expression quantifier ? or {m,n} (Espruino matches them literally)', node)
    if (ts.isStringLiteral(node) && /\\\r?\n/.test(node.getText(file))) report('multiline string literal', node)
    if (ts.isExpressionStatement(node) && ts.isStringLiteral(node.expression) && node.expression.text === 'use strict')
      report('strict mode', node)
    if (STATEMENTS_WITH_SEMICOLON.has(node.kind) && !node.getText(file).trimEnd().endsWith(';'))
      report('statement without a semicolon', node)
    if (ts.isIdentifier(node) && MISSING_GLOBALS.has(node.text)) {
      const p = node.parent
      const asProperty =
        (ts.isPropertyAccessExpression(p) && p.name === node) || (ts.isPropertyAssignment(p) && p.name === node)
      if (!asProperty) report(`missing global ${node.text}`, node)
    }
    if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression)) {
      const statics = MISSING_STATICS[node.expression.text]
      if (statics?.includes(node.name.text)) report(`missing ${node.expression.text}.${node.name.text}`, node)
    }
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      MISSING_METHODS.has(node.expression.name.text)
    ) {
      report(`missing method .${node.expression.name.text}()`, node)
    }
    ts.forEachChild(node, visit)
  }
  visit(file)
  return out
}
