// s3rver 3.7.1 ships no type declarations.
declare module "s3rver";
