import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A throwaway PKI for one test cluster, made with the openssl CLI (node:crypto cannot issue
 * X.509 certificates): a CA, the API server's serving certificate, client certificates, and
 * the service-account signing key.
 */
export class TestPki {
  readonly caCert: string;
  readonly caKey: string;

  constructor(readonly dir: string) {
    this.caKey = join(dir, 'ca.key');
    this.caCert = join(dir, 'ca.crt');
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', this.caKey]);
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      this.caKey,
      '-days',
      '2',
      '-subj',
      '/CN=amber-test-ca',
      '-out',
      this.caCert,
    ]);
  }

  /** Issues a certificate; `org` becomes the user's groups, `sans` makes it a serving cert. */
  issue(
    name: string,
    subject: { cn: string; org?: string[] },
    sans: string[] = [],
  ): { cert: string; key: string } {
    const key = join(this.dir, `${name}.key`);
    const csr = join(this.dir, `${name}.csr`);
    const cert = join(this.dir, `${name}.crt`);
    const ext = join(this.dir, `${name}.ext`);
    const subj = `/CN=${subject.cn}` + (subject.org ?? []).map((o) => `/O=${o}`).join('');
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    openssl(['req', '-new', '-key', key, '-subj', subj, '-out', csr]);
    writeFileSync(
      ext,
      sans.length
        ? `subjectAltName=${sans.map((s) => (/^[\d.]+$/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(',')}\nextendedKeyUsage=serverAuth\n`
        : 'extendedKeyUsage=clientAuth\n',
    );
    openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      this.caCert,
      '-CAkey',
      this.caKey,
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      ext,
      '-out',
      cert,
    ]);
    return { cert, key };
  }

  /** An RSA key pair for signing service-account tokens. */
  serviceAccountKeys(): { privateKey: string; publicKey: string } {
    const privateKey = join(this.dir, 'sa.key');
    const publicKey = join(this.dir, 'sa.pub');
    openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', privateKey]);
    openssl(['pkey', '-in', privateKey, '-pubout', '-out', publicKey]);
    return { privateKey, publicKey };
  }
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
