import { SchemaOptions, TLiteral, TUnion, Type } from '@sinclair/typebox';

/** A schema accepting exactly one of the given strings, typed as their union. */
export function oneOf<T extends readonly string[]>(values: T, options: SchemaOptions = {}): TUnion<TLiteral<T[number]>[]> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    options,
  ) as TUnion<TLiteral<T[number]>[]>;
}
